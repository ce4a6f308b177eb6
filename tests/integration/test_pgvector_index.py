"""The knowledge on PostgreSQL with pgvector (`index.backend: pgvector`), on a real server: two data
dirs (two replicas' machines) share every version, a removal reaches both, a rebuild needs no local
file, a writer killed before the swap leaves the live version whole, and the same knowledge gives
the same `chatbot eval` figures on either backend."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import psycopg
import pytest

from chatbot.config import load_settings
from chatbot.embeddings import FakeEmbeddings
from chatbot.errors import ConfigError
from chatbot.evaluation import evaluate_index, load_knowledge, load_queries, prepare_index
from chatbot.index_store import FileVersions, PgVersions, libpq_url, open_versions
from chatbot.kb import KnowledgeBase
from tests.integration.conftest import clean_env, run_cli
from tests.postgres import postgres_server
from tests.unit.test_kb import GIFT, HOURS, assert_no_retriever_returns

pytestmark = pytest.mark.slow
SHOP = Path(__file__).parents[2] / "bench" / "shop"
_names = itertools.count()


@pytest.fixture(scope="module")
def pg_server():
    with postgres_server(pgvector=True) as url:
        yield url


@pytest.fixture
def pg_url(pg_server):
    """A new, empty database on the module's server."""
    name = f"kb_{next(_names)}"
    with psycopg.connect(libpq_url(pg_server), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return pg_server.rsplit("/", 1)[0] + f"/{name}"


def _settings(tmp_path: Path, knowledge_dir: Path, url: str, machine: str):
    return load_settings("test", environ={}, overrides={
        "data_dir": str(tmp_path / machine), "knowledge_dir": str(knowledge_dir), "index.backend": "pgvector", "database.url": url})


def test_two_machines_share_each_version_and_a_removal_reaches_both(tmp_path, knowledge_dir, pg_url):
    a = KnowledgeBase(_settings(tmp_path, knowledge_dir, pg_url, "a"), FakeEmbeddings())
    b = KnowledgeBase(_settings(tmp_path, knowledge_dir, pg_url, "b"), FakeEmbeddings())
    seeded = a.open()
    assert b.open().version == seeded.version  # the folder's documents are known: no second version
    report = a.add([GIFT, HOURS])
    assert b.versions.current() == report.version
    on_b = b.live()
    assert [c.page_content for c in on_b.chunks] == [c.page_content for c in report.index.chunks]
    assert np.array_equal(on_b.vectors, report.index.vectors)  # float32 in, the same float32 out
    assert np.array_equal(on_b.question_vectors, report.index.question_vectors)
    assert np.array_equal(on_b.answer_vectors, report.index.answer_vectors)
    gift = next(d["id"] for d in report.added if d["name"] == "gift-cards.csv")

    removed = b.remove("gift-cards.csv")
    assert a.versions.current() == removed.version
    assert_no_retriever_returns(a.live(), gift, "Do you sell paper gift vouchers?")
    assert not any(tmp_path.rglob("versions"))  # nothing of the index on either machine's disk

    rebuilt = b.rebuild()  # b never had hours.md's original on its disk: it is a row
    assert not rebuilt.refused
    assert {d["name"] for d in a.documents()} == {"en/faq.csv", "zh/faq.csv", "en/returns.md", "hours.md"}
    with psycopg.connect(b.versions.url) as conn:
        assert conn.execute("SELECT count(*) FROM kb_versions").fetchone()[0] == 2  # the live one and the one before
        assert conn.execute("SELECT count(*) FROM kb_originals").fetchone()[0] == 4  # gift-cards.csv's went with its versions


def test_a_writer_killed_before_the_swap_leaves_the_live_version_whole(tmp_path, pg_url):
    env = {"CHATBOT_INDEX_BACKEND": "pgvector", "CHATBOT_DATABASE_URL": pg_url}
    assert run_cli("kb", "list", data_dir=tmp_path / "a", env=env).returncode == 0  # the knowledge folder seeds it
    versions = PgVersions(pg_url)
    live = versions.current()
    document = tmp_path / "gift-wrapping.md"
    document.write_text("# Gift wrapping\n\nEvery order can be wrapped in recycled paper for USD 3.50.\n")
    crashed = run_cli("kb", "add", str(document), data_dir=tmp_path / "b", env=env | {"KEFU_CRASH_AT": "before-swap"})
    assert crashed.returncode != 0
    assert versions.current() == live
    assert all(c.metadata.get("source") != "gift-wrapping.md" for c in versions.load().chunks)
    with psycopg.connect(versions.url) as conn:  # the killed transaction left no rows behind
        assert conn.execute("SELECT count(*) FROM kb_versions").fetchone()[0] == 1
    done = run_cli("kb", "add", str(document), data_dir=tmp_path / "b", env=env)  # the writer's lock went with its connection
    assert done.returncode == 0, done.stderr[-2000:]
    assert any(c.metadata.get("source") == "gift-wrapping.md" for c in versions.load().chunks)


def test_the_shop_set_gives_the_same_eval_figures_on_both_backends(tmp_path, pg_url):
    settings = load_settings("default", environ=clean_env(), overrides={"data_dir": str(tmp_path / "data")})
    index, embedder = prepare_index(settings, load_knowledge(SHOP / "knowledge.jsonl"), progress=False)
    PgVersions(pg_url).save(index, lambda step: None)
    FileVersions(tmp_path / "index", tmp_path / "kb").save(index, lambda step: None)
    queries = load_queries(sorted(SHOP.glob("queries_*.jsonl")))
    reports = [evaluate_index(settings, v.load(), embedder, queries, progress=False) for v in (PgVersions(pg_url), FileVersions(tmp_path / "index", tmp_path / "kb"))]
    for report in reports:
        report.pop("latency_ms")
    assert reports[0] == reports[1]
    assert reports[0]["all"]["n"] == 62 and reports[0]["all"]["hit@5"] > 0.9


def test_pgvector_without_a_postgresql_url_says_what_to_set(tmp_path):
    settings = load_settings("test", environ={}, overrides={"data_dir": str(tmp_path), "index.backend": "pgvector"})
    with pytest.raises(ConfigError, match="database.url"):
        open_versions(settings)
