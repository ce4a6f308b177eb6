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


def open_together(url: str, processes: int = 6) -> None:
    """`processes` processes open the store at `url` at the same moment, each writing one audit
    entry ("started"); fails with the first error one of them met."""
    context = multiprocessing.get_context("fork")
    barrier, errors = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=_open, args=(url, barrier, errors)) for _ in range(processes)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert errors.empty(), errors.get()
    assert [w.exitcode for w in workers] == [0] * processes


def test_replicas_opening_a_new_database_together_create_it_once(tmp_path):
    from chatbot.store import Store

    url = f"sqlite:///{tmp_path / 'kefu.db'}"
    open_together(url)
    store = Store(url)
    with store.engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM audit_head")).scalar() == 1
    assert len(store.audit_log()) == 6
