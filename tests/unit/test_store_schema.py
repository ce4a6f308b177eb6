"""The store's schema is created once when several processes (replicas) open a new database together."""

from __future__ import annotations

import multiprocessing

from sqlalchemy import text


def _open(url: str, barrier, errors) -> None:
    from chatbot.store import Store

    barrier.wait()
    try:
        Store(url).audit("replica", "started", "test")
    except Exception as e:  # reported to the parent, which fails the test with it
        errors.put(repr(e))


def test_replicas_opening_a_new_database_together_create_it_once(tmp_path):
    from chatbot.store import Store

    url = f"sqlite:///{tmp_path / 'kefu.db'}"
    context = multiprocessing.get_context("fork")
    barrier, errors = context.Barrier(6), context.Queue()
    workers = [context.Process(target=_open, args=(url, barrier, errors)) for _ in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0] * 6
    assert errors.empty(), errors.get()
    store = Store(url)
    with store.engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM audit_head")).scalar() == 1
    assert len(store.audit_log()) == 6
