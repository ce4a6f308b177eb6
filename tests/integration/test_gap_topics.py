"""The knowledge-gap topics on the real embedders and the shipped knowledge: stored conversations
with five planted gaps (English and Chinese) among noise give those five topics, pure, with the
same ids after more turns arrive."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from chatbot.gaps import gap_topics
from chatbot.store import Store
from tests.gap_fixture import PLANTED, stored_turns


def _purity(found, planted: dict[str, list[int]]) -> dict[str, tuple[int, float]]:
    """For each planted gap, the topic holding most of its questions: (its id, the share of that
    topic's questions that are this gap's)."""
    where = {m: name for name, ids in planted.items() for m in ids}
    best = {}
    for topic in found:
        counts = Counter(where.get(g.message_id, "noise") for g in topic.gaps)
        for name in PLANTED:
            if counts[name] and counts[name] > best.get(name, (0, 0, 0))[2]:
                best[name] = (topic.id, counts[name] / len(topic.gaps), counts[name])
    return {name: (b[0], b[1]) for name, b in best.items()}


def test_planted_gaps_become_five_pure_topics_that_keep_their_ids(manager, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'gaps.db'}")
    now = datetime.now().replace(microsecond=0)
    planted = stored_turns(store, now)
    found, gaps = gap_topics(store, manager.retriever, manager.thresholds(), now=now)
    first = _purity(found, planted)
    assert set(first) == set(PLANTED) and len({topic_id for topic_id, _ in first.values()}) == 5, first
    assert all(purity >= 0.8 for _, purity in first.values()), first
    assert len(found) == 5  # the noise (one-off questions) is in no topic
    top = found[0]
    assert len(top.label) >= 2 and len(top.examples) == 3 and top.signals.get("handoff")
    assert {s for g in gaps for s in g.signals} >= {"thumbs_down", "handoff"} and any("abstain" in s for g in gaps for s in g.signals)

    more = stored_turns(store, now + timedelta(hours=1), per_topic=4, seed=1, first=10, noise=False)
    found, _ = gap_topics(store, manager.retriever, manager.thresholds(), now=now + timedelta(hours=1))
    second = _purity(found, {name: planted[name] + more[name] for name in PLANTED})
    assert {name: topic_id for name, (topic_id, _) in second.items()} == {name: topic_id for name, (topic_id, _) in first.items()}
    assert all(purity >= 0.8 for _, purity in second.values()), second

    # Each topic's metrics count its own questions, and none of the answered shop questions (about
    # other things) is taken for one of its questions.
    from sqlalchemy import select

    from chatbot.store import GapMember

    with store._session() as s:
        members = {m.message_id: m.topic_id for m in s.scalars(select(GapMember))}
    planted_ids = {m for name in PLANTED for m in planted[name] + more[name]}
    strays = [m for m in members if m not in planted_ids and m not in {g.message_id for t in found for g in t.gaps}]
    assert len(strays) <= 0.2 * len(members), strays
    counted = {t["topic"]: t["total"]["questions"] for t in store.topic_metrics(now=now + timedelta(hours=1))["topics"]}
    assert {t.id for t in found} <= set(counted) and all(counted[t.id] >= len(t.gaps) for t in found)
