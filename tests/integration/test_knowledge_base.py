"""The knowledge base for real: `chatbot kb` in its own process beside a running `chatbot serve`,
the packaged embedder, FAISS and BM25 on disk. A document added is answered and cited; removed, no
retriever gives it again, here, in a new process or in the server; queries go on during an upload."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from chatbot.config import load_settings
from chatbot.embeddings import make_embeddings
from chatbot.kb import KnowledgeBase
from chatbot.lexical import tokenize
from chatbot.retrieval import Retriever
from tests import files
from tests.integration.conftest import clean_env, run_cli

pytestmark = pytest.mark.slow
QUESTION = "Do you offer a plant-sitting service while I travel?"
SITTER_CSV = f"question,answer\n{QUESTION},\"Yes: our Leaf Sitter visits twice a week for EUR 12 a visit, booked in the app.\"\n"


def _ask_server(url: str, question: str) -> str:
    from gradio_client import Client

    return str(Client(url, verbose=False).predict(question, [], api_name="/chat")[1][-1]["content"])


def _settings(data_dir):
    return load_settings("default", environ=clean_env(), overrides={"data_dir": str(data_dir)})


def test_a_document_added_is_answered_cited_and_after_removal_no_retriever_anywhere_returns_it(server, serve_data, tmp_path):
    path = tmp_path / "plant-sitting.csv"
    path.write_text(SITTER_CSV, encoding="utf-8")
    added = run_cli("kb", "add", str(path), "--json", data_dir=serve_data)
    assert added.returncode == 0, added.stderr
    doc_id = json.loads(added.stdout)["added"][0]["id"]

    answer = _ask_server(server, QUESTION)  # the first turn after `kb add` returned
    assert "plant-sitting.csv" in answer and "Leaf Sitter" in answer, "the running server did not answer from the new document"
    asked = run_cli("ask", "--json", QUESTION, data_dir=serve_data)
    assert json.loads(asked.stdout)["sources"][0]["source"] == "plant-sitting.csv"

    removed = run_cli("kb", "remove", doc_id, data_dir=serve_data)
    assert removed.returncode == 0 and "removed: plant-sitting.csv" in removed.stdout, removed.stderr
    answer = _ask_server(server, QUESTION)  # at once: the server checks the live version before each turn
    assert "plant-sitting.csv" not in answer and "Leaf Sitter" not in answer

    # A new process: the chat's own retrieval, and the dense and BM25 indexes searched on their own.
    asked = json.loads(run_cli("ask", "--json", QUESTION, data_dir=serve_data).stdout)
    assert all(s["source"] != "plant-sitting.csv" for s in asked["sources"]) and "Leaf Sitter" not in asked["answer"]
    settings = _settings(serve_data)
    embedder = make_embeddings(settings.embeddings, settings.model_cache_dir)
    index = KnowledgeBase(settings, embedder).live()
    assert all(c.metadata["doc_id"] != doc_id for c in index.chunks)
    dense = index.search(embedder.embed_query(QUESTION), len(index.chunks))
    assert len(dense) == len(index.chunks) and all(h.chunk.metadata["doc_id"] != doc_id for h in dense)
    bm25 = index.bm25_scores(tokenize(QUESTION))
    assert len(bm25) == len(index.chunks)
    best = index.chunks[int(bm25.argmax())]
    assert best.metadata["doc_id"] != doc_id
    passages = Retriever(index, embedder, settings.retrieval).retrieve(QUESTION, k=20).passages
    assert all(h.chunk.metadata["doc_id"] != doc_id for h in passages)


def test_queries_keep_being_answered_while_a_large_upload_is_indexed(server, serve_data, tmp_path):
    folder = tmp_path / "upload"
    folder.mkdir()
    corpus = files.mixed_corpus(30, seed=11)
    for name, data in corpus:
        (folder / name).write_bytes(data)
    upload = subprocess.Popen(
        [sys.executable, "-m", "chatbot.cli", "kb", "add", str(folder), "--json"], env=clean_env(serve_data),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    # One client address: stay under the chat page's limit of `security.address_per_minute` (60 as
    # shipped), a question every 1.5 s at most, so that the answers show the upload and not the limit.
    answers = []
    while upload.poll() is None:
        started = time.monotonic()
        answers.append(_ask_server(server, "How long does standard delivery take?"))
        time.sleep(max(0.0, 1.5 - (time.monotonic() - started)))
    out, err = upload.communicate()
    report = json.loads(out)
    assert upload.returncode == 0 and len(report["added"]) == len(corpus) and not report["refused"], err
    assert len(answers) >= 3, "too few queries ran during the upload to show anything"
    assert all("3–5 business days" in a and "en/faq.csv" in a for a in answers), [a for a in answers if "3–5" not in a][:1]
    print(f"{len(answers)} queries answered during an upload of {len(corpus)} documents ({report['embedded_chunks']} chunks, {report['seconds']:.0f} s)")
    removed = run_cli("kb", "remove", *[d["id"] for d in report["added"]], data_dir=serve_data)
    assert removed.returncode == 0, removed.stderr
