"""The knowledge index on disk: versions, the CURRENT pointer, stored vectors, old versions cleaned."""

import pytest
from langchain_core.documents import Document

from chatbot.embeddings import FakeEmbeddings
from chatbot.errors import KnowledgeIndexError
from chatbot.index import KnowledgeIndex, answer_text, current_version
from chatbot.ingest import read_document


def _chunks(knowledge_dir):
    docs = []
    for path in sorted(knowledge_dir.rglob("*.csv")) + sorted(knowledge_dir.rglob("returns.md")):
        docs += read_document(path.relative_to(knowledge_dir).as_posix(), path.read_bytes())[1]
    return docs


def test_a_saved_index_loads_with_the_same_chunks_vectors_and_answers(knowledge_dir, tmp_path):
    embedder = FakeEmbeddings()
    built = KnowledgeIndex.build(_chunks(knowledge_dir), embedder)
    built.save(tmp_path / "index")
    loaded = KnowledgeIndex.load(tmp_path / "index")
    assert loaded.version == built.version == current_version(tmp_path / "index")
    assert [c.metadata for c in loaded.chunks] == [c.metadata for c in built.chunks]
    assert (loaded.vectors == built.vectors).all() and (loaded.question_vectors == built.question_vectors).all()
    assert (loaded.answer_vectors == built.answer_vectors).all()
    query = embedder.embed_query("how long does standard delivery take")
    assert loaded.search(query, 1)[0].chunk.metadata["id"] == "en/faq.csv#0"
    assert loaded.best_faq(query).chunk.metadata["question"] == "How long does standard delivery take?"


def test_given_vectors_are_used_instead_of_embedding_again(knowledge_dir):
    chunks = _chunks(knowledge_dir)
    first = KnowledgeIndex.build(chunks, FakeEmbeddings())

    class Refusing(FakeEmbeddings):
        def embed_documents(self, texts):
            raise AssertionError("embedded again")

        def embed_query(self, text):
            raise AssertionError("embedded again")

    again = KnowledgeIndex.build(chunks, Refusing(), vectors=first.vectors, question_vectors=first.question_vectors, answer_vectors=first.answer_vectors)
    assert (again.vectors == first.vectors).all() and (again.answer_vectors == first.answer_vectors).all()


def test_question_and_answer_passages_have_their_answer_embedded(knowledge_dir):
    chunks = _chunks(knowledge_dir)
    embedder = FakeEmbeddings()
    index = KnowledgeIndex.build(chunks, embedder)
    for chunk, row in zip(chunks, index.answer_vectors):
        answer = answer_text(chunk)
        if chunk.metadata.get("kind") == "faq":  # a FAQ row: its answer, with its title
            assert answer == f"{chunk.metadata['title']}\n{chunk.metadata['answer']}"
            assert row.tolist() == pytest.approx(embedder.embed_documents([answer])[0])
        elif answer is None:
            assert not row.any()
    assert any(c.metadata.get("kind") == "faq" for c in chunks) and any(answer_text(c) is None for c in chunks)


def test_a_passage_that_opens_with_a_question_has_an_answer():
    def passage(text, title="A AND B GUEST HOUSE"):
        return Document(page_content=f"{title}\n{text}", metadata={"title": title, "kind": "section"})

    assert answer_text(passage("Do you have parking? There is onsite parking, but it costs extra.")) == "A AND B GUEST HOUSE\nThere is onsite parking, but it costs extra."
    assert answer_text(passage("能带宠物吗？不能，本店不接受宠物。", title="")) == "不能，本店不接受宠物。"
    assert answer_text(passage("The room was spotless. Would I stay again? Yes.")) is None  # it opens with a statement
    assert answer_text(passage("Is there parking?")) is None  # a question with no answer


def test_a_missing_index_says_what_to_run(tmp_path):
    with pytest.raises(KnowledgeIndexError, match="run `chatbot kb rebuild`"):
        KnowledgeIndex.load(tmp_path / "nothing")


def test_the_live_and_previous_versions_are_kept_and_crash_leftovers_removed(knowledge_dir, tmp_path):
    index_dir = tmp_path / "index"
    chunks = _chunks(knowledge_dir)
    versions = []
    for n in range(4):
        index = KnowledgeIndex.build(chunks, FakeEmbeddings())
        if n == 2:  # what a crashed writer leaves: a temporary folder and a version never made live
            (index_dir / "versions" / ".20990101T000000.000000Z.tmp").mkdir()
            (index_dir / "versions" / "20000101T000000.000000Z").mkdir()
        index.save(index_dir)
        versions.append(index.version)
    kept = sorted(p.name for p in (index_dir / "versions").iterdir())
    assert kept == sorted(versions[-2:])
    assert current_version(index_dir) == versions[-1]


def test_an_empty_knowledge_base_is_refused():
    with pytest.raises(KnowledgeIndexError, match="knowledge base is empty"):
        KnowledgeIndex.build([], FakeEmbeddings())


def test_a_version_made_before_answers_were_embedded_still_loads(knowledge_dir, tmp_path):
    built = KnowledgeIndex.build(_chunks(knowledge_dir), FakeEmbeddings())
    folder = built.save(tmp_path / "index")
    (folder / "answers.npy").unlink()  # as chunker 3 wrote it; `kb` then re-embeds it (another chunker)
    loaded = KnowledgeIndex.load(tmp_path / "index")
    assert loaded.answer_vectors.shape == built.vectors.shape and not loaded.answer_vectors.any()
