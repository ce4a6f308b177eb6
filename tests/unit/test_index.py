"""The knowledge index on disk: versions, the CURRENT pointer, staleness, old versions cleaned."""

import pytest

from chatbot.embeddings import FakeEmbeddings
from chatbot.errors import KnowledgeIndexError
from chatbot.index import KnowledgeIndex, build_index, ensure_index


def test_a_saved_index_loads_with_the_same_chunks_and_answers(knowledge_dir, tmp_path):
    embedder = FakeEmbeddings()
    built = build_index(knowledge_dir, tmp_path / "index", embedder)
    loaded = KnowledgeIndex.load(tmp_path / "index")
    assert loaded.version == built.version
    assert [c.metadata for c in loaded.chunks] == [c.metadata for c in built.chunks]
    query = embedder.embed_query("how long does standard delivery take")
    assert loaded.search(query, 1)[0].chunk.metadata["id"] == "en/faq.csv#0"
    assert loaded.best_faq(query).chunk.metadata["question"] == "How long does standard delivery take?"


def test_a_missing_index_says_what_to_run(tmp_path):
    with pytest.raises(KnowledgeIndexError, match="run `chatbot index build`"):
        KnowledgeIndex.load(tmp_path / "nothing")


def test_ensure_index_reuses_a_fresh_index_and_rebuilds_a_stale_one(knowledge_dir, tmp_path):
    embedder = FakeEmbeddings()
    first = ensure_index(knowledge_dir, tmp_path / "index", embedder)
    assert ensure_index(knowledge_dir, tmp_path / "index", embedder).version == first.version
    (knowledge_dir / "en" / "more.csv").write_text("question,answer\nDo you sell gift cards?,Yes.\n", encoding="utf-8")
    rebuilt = ensure_index(knowledge_dir, tmp_path / "index", embedder)
    assert rebuilt.version != first.version
    assert len(rebuilt.chunks) == len(first.chunks) + 1


def test_only_the_newest_versions_are_kept_and_current_points_at_the_last(knowledge_dir, tmp_path):
    index_dir = tmp_path / "index"
    versions = [build_index(knowledge_dir, index_dir, FakeEmbeddings()).version for _ in range(4)]
    kept = sorted(p.name for p in (index_dir / "versions").iterdir())
    assert kept == sorted(versions[-2:])
    assert (index_dir / "CURRENT").read_text() == versions[-1]


def test_an_empty_knowledge_folder_is_refused(tmp_path):
    (tmp_path / "k").mkdir()
    with pytest.raises(KnowledgeIndexError, match="knowledge base is empty"):
        build_index(tmp_path / "k", tmp_path / "index", FakeEmbeddings())
