"""The knowledge base on fakes: add, replace, remove, the folder seed, bad files refused one by one,
re-embedding, and a running manager moved onto each new version."""

import numpy as np
import pytest

from chatbot.config import load_settings
from chatbot.dialogue import DialogueManager
from chatbot.embeddings import FakeEmbeddings
from chatbot.errors import UserError
from chatbot.index import current_version
from chatbot.kb import KnowledgeBase, Upload
from chatbot.lexical import tokenize
from chatbot.llm import FakeChatModel
from chatbot.prompts import Prompts
from chatbot.retrieval import Retriever
from tests import files

GIFT = Upload("gift-cards.csv", b"question,answer\nDo you sell paper gift vouchers?,Yes: paper vouchers from 10 to 200 euros.\n")
HOURS = Upload("hours.md", b"# Shop hours\n\nThe Lisbon showroom opens from 9 to 18 on weekdays.\n")
GOOD = [Upload("care.docx", files.docx("Care guide", {"Watering": "Water the fern weekly."})), Upload("lamp.json", files.faq_json([("Does the moon lamp dim?", "Yes, in five steps.")]))]


@pytest.fixture
def kb(settings):
    base = KnowledgeBase(settings, FakeEmbeddings())
    base.open()
    return base


def retriever(index):
    return Retriever(index, FakeEmbeddings(), load_settings("test", environ={}).retrieval)


def doc_rows(index, doc_id):
    return [i for i, c in enumerate(index.chunks) if c.metadata["doc_id"] == doc_id]


def assert_no_retriever_returns(index, doc_id, question):
    """Neither the dense index, BM25, the FAQ-question index nor the chat's retriever gives `doc_id`."""
    assert doc_rows(index, doc_id) == []
    vector = FakeEmbeddings().embed_query(question)
    assert all(h.chunk.metadata["doc_id"] != doc_id for h in index.search(vector, len(index.chunks)))
    bm25 = index.bm25_scores(tokenize(question))
    assert len(bm25) == len(index.chunks)  # every row BM25 can score is a live chunk
    faq = index.best_faq(vector)
    assert faq is None or faq.chunk.metadata["doc_id"] != doc_id
    assert all(h.chunk.metadata["doc_id"] != doc_id for h in retriever(index).retrieve(question, k=20).passages)


def test_the_knowledge_folder_seeds_a_new_base_and_a_second_open_changes_nothing(kb, settings):
    docs = kb.documents()
    assert {d["name"] for d in docs} == {"en/faq.csv", "zh/faq.csv", "en/returns.md"}
    assert all(d["origin"] == "folder" and len(d["id"]) == 16 for d in docs)
    version = current_version(settings.index_dir)
    assert KnowledgeBase(settings, FakeEmbeddings()).open().version == version


def test_an_added_document_is_found_cited_and_only_its_chunks_are_embedded(kb):
    report = kb.add([GIFT])
    assert [d["name"] for d in report.added] == ["gift-cards.csv"] and report.embedded_chunks == 1
    hit = retriever(kb.live()).retrieve("Do you sell paper gift vouchers?").passages[0]
    assert hit.chunk.metadata["source"] == "gift-cards.csv" and hit.chunk.metadata["doc_id"] == report.added[0]["id"]


def test_the_same_file_again_is_a_no_op_and_a_new_version_under_the_name_replaces_it(kb):
    first = kb.add([GIFT])
    again = kb.add([GIFT])
    assert again.unchanged == ["gift-cards.csv"] and not again.changed and again.version == first.version
    newer = kb.add([Upload("gift-cards.csv", b"question,answer\nDo you sell paper gift vouchers?,No: only digital gift cards now.\n")])
    assert [d["id"] for d in newer.replaced] == [first.added[0]["id"]]
    index = kb.live()
    assert doc_rows(index, first.added[0]["id"]) == []
    assert [d["name"] for d in kb.documents()].count("gift-cards.csv") == 1
    reply = retriever(index).retrieve("Do you sell paper gift vouchers?").passages[0]
    assert "only digital" in reply.chunk.page_content


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("scan.pdf", files.scanned_pdf(), "scan.pdf: no text could be extracted from its 2 page(s); it looks scanned. Run OCR"),
        ("broken.pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\ngarbage", "broken.pdf: not a readable PDF"),
        ("broken.docx", b"PK\x03\x04 this is not really a zip", "broken.docx: not a readable DOCX file"),
        ("bomb.docx", files.zip_bomb_docx(), "bomb.docx: refused: it would unpack to 120 MB"),
        ("empty.md", b"", "empty.md: the file is empty"),
        ("tool.exe", b"MZ\x90\x00", "tool.exe: unsupported file type '.exe'; upload one of"),
        ("big.md", b"# Big\n\n" + b"x" * (2 * 2**20), "big.md: 2.0 MB is over the 1 MB limit; split it"),
        ("../../etc/secrets.md", b"# Secret\n\ntext", "../../etc/secrets.md: refused: the file name is a path outside the knowledge base"),
        ("/etc/passwd.md", b"# Root\n\ntext", "/etc/passwd.md: refused: the file name is a path outside the knowledge base"),
        ("binary.txt", bytes(range(256)) * 8, "binary.txt: not readable as UTF-8 or GB18030/GBK text; save it as UTF-8"),
        ("prices.csv", b"name,price\nlamp,10\n", "prices.csv: no question/answer columns (found: name, price); name them 'question' and 'answer'"),
        ("prices.xlsx", files.xlsx([["name", "price"], ["lamp", "10"]]), "prices.xlsx: no question/answer columns"),
        ("faq.json", b'{"question": "not a list"}', "faq.json: must be a JSON list"),
    ],
)
def test_a_bad_file_is_refused_by_name_with_what_to_do_and_the_rest_of_the_batch_goes_in(settings, name, data, message):
    settings.kb.max_file_mb = 1
    kb = KnowledgeBase(settings, FakeEmbeddings())
    kb.open()
    report = kb.add([GOOD[0], Upload(name, data), GOOD[1]])
    assert len(report.refused) == 1 and report.refused[0].startswith(message), report.refused
    assert [d["name"] for d in report.added] == ["care.docx", "lamp.json"]
    names = {d["name"] for d in kb.documents()}
    assert {"care.docx", "lamp.json"} <= names and name not in names
    assert retriever(kb.live()).retrieve("Does the moon lamp dim?").faq.chunk.metadata["source"] == "lamp.json"


def test_a_removed_document_is_never_returned_in_this_process_or_after_a_restart(kb, settings):
    doc_id = kb.add([GIFT, HOURS]).added[0]["id"]
    kb.remove(doc_id)
    assert_no_retriever_returns(kb.live(), doc_id, "Do you sell paper gift vouchers?")
    restarted = KnowledgeBase(settings, FakeEmbeddings())
    assert_no_retriever_returns(restarted.open(), doc_id, "Do you sell paper gift vouchers?")
    assert "hours.md" in {d["name"] for d in restarted.documents()}
    with pytest.raises(UserError, match="no document 'nope' in the knowledge base; `chatbot kb list` shows the ids"):
        kb.remove("nope")


def test_a_folder_document_an_admin_removed_stays_removed_until_its_file_changes(kb, settings, knowledge_dir):
    kb.remove("en/returns.md")
    assert "en/returns.md" not in {d["name"] for d in KnowledgeBase(settings, FakeEmbeddings()).open().manifest["documents"]}
    (knowledge_dir / "en" / "returns.md").write_text("# Returns policy\n\nReturns within 60 days now.\n", encoding="utf-8")
    reopened = KnowledgeBase(settings, FakeEmbeddings())
    reopened.open()
    assert "en/returns.md" in {d["name"] for d in reopened.documents()}


def test_the_folder_is_mirrored_a_changed_file_replaced_and_a_deleted_one_removed(kb, knowledge_dir, settings):
    (knowledge_dir / "en" / "faq.csv").write_text("question,answer\nDo you ship abroad?,\"Yes, to the whole EU.\"\n", encoding="utf-8")
    (knowledge_dir / "zh" / "faq.csv").unlink()
    kb.add([GIFT])  # an uploaded document is not the folder's to remove
    index = KnowledgeBase(settings, FakeEmbeddings()).open()
    names = {d["name"]: d for d in index.manifest["documents"]}
    assert set(names) == {"en/faq.csv", "en/returns.md", "gift-cards.csv"}
    assert names["en/faq.csv"]["chunks"] == 1


def test_a_sync_with_the_knowledge_folder_is_written_to_the_audit_log_and_no_change_writes_nothing(settings, knowledge_dir):
    from chatbot.runtime import audit_folder_sync
    from chatbot.store import Store, database_url

    def rows():
        return Store(database_url(settings.database.url, settings.data_dir)).audit_log(action="kb-sync")

    KnowledgeBase(settings, FakeEmbeddings()).open(on_sync=audit_folder_sync(settings))  # the seed
    (seed,) = rows()
    assert seed.actor == "knowledge-folder" and set(seed.target.split(", ")) == {"en/faq.csv", "zh/faq.csv", "en/returns.md"}
    KnowledgeBase(settings, FakeEmbeddings()).open(on_sync=audit_folder_sync(settings))
    assert len(rows()) == 1  # nothing changed: no row
    (knowledge_dir / "zh" / "faq.csv").unlink()
    index = KnowledgeBase(settings, FakeEmbeddings()).open(on_sync=audit_folder_sync(settings))
    latest = rows()[0]
    assert latest.target == "zh/faq.csv" and latest.detail["removed"] == 1 and latest.detail["version"] == index.version


def test_another_embedder_makes_open_re_embed_every_document_from_the_originals(kb, settings):
    kb.add([GIFT])

    class Other(FakeEmbeddings):
        name = "fake/other"

    index = KnowledgeBase(settings, Other(dims=128)).open()
    assert index.manifest["embedder"] == "fake/other" and index.vectors.shape[1] == 128
    assert "gift-cards.csv" in {d["name"] for d in index.manifest["documents"]}


def test_a_running_manager_moves_to_a_version_made_by_another_process_and_a_turn_in_flight_finishes(kb, settings):
    from chatbot.runtime import IndexWatcher

    index = kb.live()
    manager = DialogueManager(settings, Retriever(index, FakeEmbeddings(), settings.retrieval), FakeChatModel(), Prompts(settings.prompts_dir))
    watcher = IndexWatcher(kb, manager)
    assert watcher.refresh() is False
    in_flight = manager.retriever
    KnowledgeBase(settings, FakeEmbeddings()).add([GIFT])  # "another process": its own object, same data dir
    assert watcher.refresh() is True
    assert manager.retriever.index.version == current_version(settings.index_dir) != index.version
    assert manager.respond("Do you sell paper gift vouchers?").finish().sources[0].source == "gift-cards.csv"
    assert in_flight.retrieve("Do you sell paper gift vouchers?").passages  # the old version still answers
    assert np.isfinite(in_flight.index.vectors).all()


def test_removing_the_last_document_is_refused(settings, tmp_path):
    settings.knowledge_dir = tmp_path / "empty"
    kb = KnowledgeBase(settings, FakeEmbeddings())
    kb.add([GIFT])
    with pytest.raises(UserError, match="would remove every document"):
        kb.remove("gift-cards.csv")


def test_a_row_that_replaces_an_entry_hides_it_until_its_document_leaves_and_a_restart_keeps_that(kb, settings, monkeypatch, capsys):
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("CHATBOT_KNOWLEDGE_DIR", str(settings.knowledge_dir))
    kb.add([GIFT, HOURS])
    question = "Do you sell paper gift vouchers?"
    edit = Upload("gap-answers.csv", f"question,answer,replaces\n{question},No: only digital gift cards since May.,{question}\n".encode())
    report = kb.add([edit])
    index = kb.live()
    entries = [c for c in index.chunks if c.metadata.get("question") == question]
    assert [c.metadata["source"] for c in entries] == ["gap-answers.csv"]  # the edit alone
    assert index.manifest["edited"] == [question] and report.embedded_chunks == 1
    assert retriever(index).retrieve(question).faq.chunk.metadata["answer"].startswith("No: only digital")
    assert len(index.question_vectors) == len(index.faq_rows)  # the FAQ-question rows left out with their entries
    from chatbot.cli import main

    assert main(["--profile", "test", "kb", "list"]) == 0
    assert f'edited: the FAQ entry "{question}" is answered by a row that replaces it' in capsys.readouterr().out
    reopened = KnowledgeBase(settings, FakeEmbeddings()).open()
    assert reopened.version == index.version  # nothing to restore while the edit stays
    kb.add([HOURS, Upload("more-hours.md", b"# More\n\nSundays closed.\n")])  # another change keeps it hidden
    assert [c.metadata["source"] for c in kb.live().chunks if c.metadata.get("question") == question] == ["gap-answers.csv"]
    restored = kb.remove(report.added[0]["id"])
    assert restored.embedded_chunks == 1  # the hidden entry, read again from its original
    faq = retriever(kb.live()).retrieve(question).faq
    assert faq.chunk.metadata["source"] == "gift-cards.csv" and kb.live().manifest["edited"] == []
    rebuilt = kb.rebuild()
    assert sum(c.metadata.get("question") == question for c in rebuilt.index.chunks) == 1
