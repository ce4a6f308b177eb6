"""The store on a real PostgreSQL server: the schema created once by replicas starting together
(an advisory lock), and the same stored conversations giving the same figures as on SQLite (the
resolution and per-topic metrics are SQL of their own), the audit chain and retention included."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

from chatbot.store import Store
from tests.gap_fixture import stored_turns
from tests.postgres import postgres_server
from tests.unit.test_store_schema import open_together

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pg_url():
    with postgres_server() as url:
        yield url


def test_replicas_opening_a_new_postgresql_database_together_create_it_once(pg_url):
    open_together(pg_url)
    store = Store(pg_url)
    with store.engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM audit_head")).scalar() == 1
    assert len(store.audit_log(action="started")) == 6
    assert store.verify_audit()[1] is None  # the hash chain holds across the six writers


def _workload(store: Store, now: datetime) -> dict:
    stored_turns(store, now)
    asked, _ = store.gap_messages(now - timedelta(days=30))
    members = {m.id: (m.conversation_id, len(m.content) % 4) for m in asked}  # four topics by a rule, the same on both
    store.save_gap_members(members, now - timedelta(days=30))
    conversations = store.list_conversations("all", limit=1000)
    return {
        "resolution": store.resolution_metrics(30, now),
        "topics": store.topic_metrics(30, now),
        "daily": store.daily_counts(30),
        "listed": sorted((c["status"], c.get("messages"), c.get("thumbs_down")) for c in conversations),
        "thumbs_down": len(store.list_conversations("thumbs_down", limit=1000)),
        "handoff": len(store.list_conversations("handoff", limit=1000)),
        "purged": store.purge(10, now),
        "left": len(store.list_conversations("all", limit=1000)),
    }


def test_the_same_conversations_give_the_same_figures_on_postgresql_as_on_sqlite(pg_url, tmp_path):
    now = datetime(2026, 12, 7, 12, 0)
    with Store(pg_url).engine.begin() as c:  # a fresh schema: the test above shares this server
        c.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    on_postgres = _workload(Store(pg_url), now)
    on_sqlite = _workload(Store(f"sqlite:///{tmp_path / 'kefu.db'}"), now)
    assert sum(d["conversations"] for d in on_postgres["resolution"]["days"]) > 100 and on_postgres["topics"] and on_postgres["purged"]
    assert on_postgres == on_sqlite


def test_every_replica_gets_the_one_signing_secret_the_database_keeps(pg_url, tmp_path):
    from chatbot.web.security import load_secret

    secrets = {load_secret("", tmp_path / name, Store(pg_url).signing_secret()) for name in ("a", "b", "c")}
    assert len(secrets) == 1 and len(secrets.pop()) >= 48
    assert not any(tmp_path.iterdir())  # none written to a replica's data dir
    assert Store(f"sqlite:///{tmp_path / 'kefu.db'}").signing_secret() is None  # one machine: the data dir's file
