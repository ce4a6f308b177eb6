"""The knowledge gaps (`chatbot/gaps.py`) on fakes: the signals read from the store, the topics
from vectors, their ids across runs, their rank."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta

import numpy as np
import pytest

from chatbot.gaps import Gap, cluster, find_gaps, match, score_gaps, topics
from chatbot.store import Store, database_url

NOW = datetime(2026, 12, 1, 12, 0)


@pytest.fixture
def store(tmp_path):
    return Store(database_url("", tmp_path))


def _turn(store, conversation, question, mode, answer="(reply)"):
    asked = store.add_message(conversation, "user", question, lang="en")
    replied = store.add_message(conversation, "assistant", answer, mode=mode)
    return asked, replied


def test_each_signal_is_read_from_the_store(store):
    c = store.create_conversation("site", "visitor").id
    refused, _ = _turn(store, c, "Do you offer gift wrapping?", "abstain")
    disliked, answer = _turn(store, c, "How long does delivery take?", "generate")
    store.add_feedback(c, answer.id, -1, "too vague")
    handed, _ = _turn(store, c, "Can you assemble my shelf?", "generate")
    _turn(store, c, "I want to talk to a person", "handoff")  # the request for a person is not the gap
    store.add_message(c, "agent", "Yes, for USD 30.")
    fine, _ = _turn(store, c, "Thanks, what about returns?", "faq")
    messages, down = store.gap_messages(NOW - timedelta(days=365))
    gaps, pairs = find_gaps(messages, down)
    signals = {g.message_id: g.signals for g in gaps}
    assert signals == {refused.id: {"abstain": ""}, disliked.id: {"thumbs_down": "too vague"}, handed.id: {"handoff": "Yes, for USD 30."}}
    # answered, then another question within 10 minutes: maybe a repeat (`score_gaps` compares them)
    assert [(a.message_id, b.message_id) for a, b in pairs] == [(disliked.id, handed.id), (handed.id, fine.id)]
    assert [g.history for g in gaps if g.message_id == handed.id][0][-1] == {"role": "assistant", "content": "(reply)"}


def test_a_question_asked_again_at_once_is_a_repeat_and_an_abstain_is_typed(store, settings):
    from chatbot.calibration import resolve
    from chatbot.embeddings import FakeEmbeddings
    from chatbot.kb import KnowledgeBase
    from chatbot.retrieval import Retriever

    index = KnowledgeBase(settings, FakeEmbeddings()).open()
    retriever = Retriever(index, FakeEmbeddings(), settings.retrieval)
    thresholds = resolve(settings.retrieval, index.manifest.get("calibration"))
    c = store.create_conversation("site", "visitor").id
    first, _ = _turn(store, c, "How long does standard delivery take?", "faq")
    _turn(store, c, "how long does standard delivery take", "faq")  # the same again: the answer did not settle it
    other, _ = _turn(store, c, "Can opened items be returned?", "generate")
    _turn(store, c, "What is the capital of France?", "abstain")
    messages, down = store.gap_messages(NOW - timedelta(days=365))
    gaps = score_gaps(*find_gaps(messages, down), retriever, thresholds)
    by_id = {g.message_id: g for g in gaps}
    assert by_id[first.id].signals == {"repeat": ""}
    assert other.id not in by_id  # followed by another question: not a repeat
    refused = [g for g in gaps if g.question.startswith("What is the capital")][0]
    assert set(refused.signals) <= {"off_topic_abstain", "near_miss_abstain"} and refused.lang == "en" and refused.vector is not None
    assert isinstance(refused.topic, float) and refused.threshold == thresholds.answer_for("en")  # its scores, shown with it


def _blobs(rng, centres, per, spread=0.05):
    return [c + rng.normal(0, spread, c.shape) for c in centres for _ in range(per)]


def test_topics_are_found_noise_left_out_and_ids_kept_across_runs():
    rng = np.random.default_rng(0)
    centres = [np.eye(128)[i] * 3 for i in range(3)]
    noise = [rng.normal(0, 1, 128) for _ in range(8)]
    vectors = _blobs(rng, centres, 8) + noise
    labels = cluster(np.asarray(vectors))
    assert len(set(labels) - {-1}) == 3 and (labels[-8:] == -1).sum() >= 5  # HDBSCAN may take a stray point into a topic at its edge
    def gaps_of(vectors, start):
        return [Gap(start + n, "c", f"q{start + n}", NOW - timedelta(days=n % 10), [], {"off_topic_abstain": ""}, "en", v) for n, v in enumerate(vectors)]
    first, keep = topics(gaps_of(vectors, 0), [], NOW)
    assert len(first) == 3 and all(row["id"] is None for row in keep)
    stored = [{"id": n + 1, "lang": r["lang"], "centroid": r["centroid"], "first_seen": r["first_seen"]} for n, r in enumerate(keep)]
    for row, s in zip(keep, stored):
        row["topic"].id = s["id"]
    blob_of = {t.id: Counter(g.message_id // 8 for g in t.gaps).most_common(1)[0][0] for t in first}
    # later: more questions of the same three subjects, and a new fourth one
    more = _blobs(rng, [*centres, np.eye(128)[5] * 3], 6)
    second, keep2 = topics(gaps_of(vectors + more, 0), stored, NOW)
    assert len(second) == 4
    for t in second:
        if t.id in blob_of:  # the same subject, the same id
            assert Counter(g.message_id // 8 for g in t.gaps if g.message_id < 24).most_common(1)[0][0] == blob_of[t.id]
    assert [r["id"] for r in keep2].count(None) == 1  # only the new subject is new


def test_a_centroid_matches_only_a_mutually_nearest_one_as_near_as_its_own_questions():
    stored = np.asarray([[1.0, 0.0], [0.0, 1.0]])
    new = np.asarray([[0.995, 0.0998], [0.6, 0.8]])
    assert match(new, np.asarray([0.99, 0.99]), stored) == [0, None]  # 0.8 from the second: further than its spread


def test_a_topic_with_recent_questions_and_handoffs_ranks_first():
    rng = np.random.default_rng(1)
    a, b = np.eye(16)[0] * 3, np.eye(16)[1] * 3
    old = [Gap(n, "c", "old", NOW - timedelta(days=28), [], {"off_topic_abstain": ""}, "en", v) for n, v in enumerate(_blobs(rng, [a], 6))]
    new = [Gap(10 + n, "c", "new", NOW - timedelta(hours=1), [], {"handoff": "reply"} if n < 2 else {"near_miss_abstain": ""}, "en", v)
           for n, v in enumerate(_blobs(rng, [b], 6))]
    found, _ = topics(old + new, [], NOW)
    assert [t.examples[0] for t in found] == ["new", "old"]
    assert found[0].signals == {"handoff": 2, "near_miss_abstain": 4} and found[0].score > 5 * found[1].score


def test_the_store_keeps_topic_ids_and_never_customer_text(store):
    ids = store.save_gap_topics([{"id": None, "lang": "en", "centroid": [1.0, 0.0], "first_seen": NOW}])
    assert store.save_gap_topics([{"id": ids[0], "lang": "en", "centroid": [0.9, 0.1], "first_seen": NOW},
                                  {"id": None, "lang": "zh", "centroid": [0.0, 1.0], "first_seen": NOW}]) == [ids[0], ids[0] + 1]
    assert [(t["id"], t["centroid"]) for t in store.gap_topics()] == [(ids[0], [0.9, 0.1]), (ids[0] + 1, [0.0, 1.0])]


def test_the_gaps_command_lists_the_topics(tmp_path, monkeypatch, capsys, knowledge_dir):
    from chatbot.cli import main

    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CHATBOT_KNOWLEDGE_DIR", str(knowledge_dir))
    store = Store(database_url("", tmp_path / "data"))
    asked = {}
    for question in ["Do you offer gift wrapping?"] * 6 + ["你们有线下门店吗？"] * 6 + ["Who painted the Mona Lisa?", "明天天气怎么样？"]:
        c = store.create_conversation("site", f"visitor-{len(asked)}").id
        asked[store.add_message(c, "user", question, lang="zh" if "你" in question else "en").id] = question
        store.add_message(c, "assistant", "(reply)", mode="abstain")
    for question in ("Do you offer gift wrapping?", "How long does standard delivery take?"):  # answered: no gaps
        c = store.create_conversation("site", "answered").id
        _turn(store, c, question, "faq")
    assert main(["--profile", "test", "gaps", "list", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)  # the fake embedder: the same words, the same vector
    assert report["gaps"] == 14 and report["in_no_topic"] == 2
    # the topic's metrics count its answered questions too: the one as near its centre as its own
    counted = {t["topic"]: t["total"] for t in store.topic_metrics()["topics"]}
    gift = next(t["id"] for t in report["topics"] if t["lang"] == "en")
    assert (counted[gift]["questions"], counted[gift]["answered"], counted[gift]["abstained"]) == (7, 1, 6)
    assert sorted((t["lang"], t["count"], t["examples"]) for t in report["topics"]) == [
        ("en", 6, ["Do you offer gift wrapping?"]), ("zh", 6, ["你们有线下门店吗？"])]
    assert {asked[m] for t in report["topics"] for m in t["message_ids"]} == {"Do you offer gift wrapping?", "你们有线下门店吗？"}
    assert main(["--profile", "test", "gaps", "list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("14 gap questions in the last 30 days: 2 topics, 2 in no topic") and "  - Do you offer gift wrapping?" in out


def test_a_gap_is_drafted_from_the_persons_reply_approved_published_and_then_answered(tmp_path, monkeypatch, capsys, knowledge_dir):
    from chatbot.cli import main
    from chatbot.config import load_settings
    from chatbot.runtime import build_dialogue_manager

    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CHATBOT_KNOWLEDGE_DIR", str(knowledge_dir))
    store = Store(database_url("", tmp_path / "data"))
    handed = []
    for n in range(6):
        c = store.create_conversation("site", f"visitor-{n}").id
        store.add_message(c, "user", "Do you offer gift wrapping?", lang="en")
        store.add_message(c, "assistant", "(reply)", mode="abstain")
        if n < 2:  # handed to a person, who answers (with a phone number the draft must not carry)
            store.add_message(c, "user", "talk to a person please")
            store.set_status(c, "handoff")
            store.add_message(c, "assistant", "(notice)", mode="handoff")
            store.add_message(c, "agent", "Yes: gift wrap is USD 4 per item, call +1 415 555 0100.")
            handed.append(c)
    assert main(["--profile", "test", "gaps", "list", "--json"]) == 0
    topic = json.loads(capsys.readouterr().out)["topics"][0]
    assert main(["--profile", "test", "gaps", "draft", str(topic["id"])]) == 0
    out = capsys.readouterr().out
    assert "Q: Do you offer gift wrapping?" in out and "from the person's replies in conversations" in out
    draft = store.gap_drafts()[0]
    assert draft.cites == sorted(handed) and not draft.needs_source
    assert draft.answer == "Yes: gift wrap is USD 4 per item, call [phone ••••0100]."  # masked
    # tried first: the version it would publish answers the topic's question, and nothing went live yet
    from chatbot.embeddings import FakeEmbeddings
    from chatbot.gaps import try_approval
    from chatbot.kb import KnowledgeBase
    from chatbot.privacy import Masker
    from chatbot.replay import Asked, replay

    settings = load_settings("test", environ={"CHATBOT_DATA_DIR": str(tmp_path / "data"), "CHATBOT_KNOWLEDGE_DIR": str(knowledge_dir)})
    kb = KnowledgeBase(settings, FakeEmbeddings())
    trial = try_approval(store, kb, Masker(), draft.id)
    result = replay(build_dialogue_manager(settings), trial.index, [Asked("Do you offer gift wrapping?", [], "test.jsonl", True)])
    assert [(c.kind, c.harmful) for c in result["changes"]] == [("abstain → answer", False)]
    assert not any(d["name"] == "gap-answers.csv" for d in kb.documents())
    assert main(["--profile", "test", "gaps", "approve", str(draft.id)]) == 0
    assert "gap-answers.csv is in index" in capsys.readouterr().out
    assert main(["--profile", "test", "gaps", "metrics", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["total"]["conversations"] == 6 and [t["topic"] for t in metrics["topics"]] == [topic["id"]]
    assert metrics["total"]["handoff_rate"] == round(2 / 6, 4) and metrics["total"]["resolution_rate"] == 0.0
    assert main(["--profile", "test", "gaps", "metrics"]) == 0
    assert "draft approved" in (out := capsys.readouterr().out) and "none of its questions answered since yet" in out  # none asked since

    reply = build_dialogue_manager(settings).respond("Do you offer gift wrapping?").finish()
    assert (reply.mode, reply.text) == ("faq", draft.answer) and reply.sources[0].source.endswith("gap-answers.csv")

    assert main(["--profile", "test", "gaps", "dismiss", str(draft.id), "--reason", " "]) == 2  # a reason is required
    assert "say why the draft is dismissed" in capsys.readouterr().err
    assert main(["--profile", "test", "gaps", "dismiss", str(draft.id), "--reason", "we stopped gift wrapping"]) == 0
    assert store.gap_drafts()[0].status == "dismissed" and store.gap_drafts()[0].reason == "we stopped gift wrapping"
    reply = build_dialogue_manager(settings).respond("Do you offer gift wrapping?").finish()
    assert reply.mode != "faq" or "gift wrap is USD 4" not in reply.text  # the document is gone with it


def test_a_topic_nobody_answered_gets_the_lms_draft_marked_as_needing_a_source(settings, store):
    from chatbot.dialogue import DialogueManager
    from chatbot.embeddings import FakeEmbeddings
    from chatbot.gaps import Topic, write_draft
    from chatbot.kb import KnowledgeBase
    from chatbot.llm import FakeChatModel
    from chatbot.prompts import Prompts
    from chatbot.retrieval import Retriever

    index = KnowledgeBase(settings, FakeEmbeddings()).open()
    manager = DialogueManager(settings, Retriever(index, FakeEmbeddings(), settings.retrieval), FakeChatModel(), Prompts(settings.prompts_dir))
    gaps = [Gap(n, f"c{n}", "Can opened items be returned after a month?", NOW, [], {"near_miss_abstain": ""}, "en") for n in range(5)]
    topic = Topic(7, "en", ["opened"], ["Can opened items be returned after a month?"], gaps, 5.0, NOW, NOW)
    draft = write_draft(topic, manager, manager.masker)
    assert draft["needs_source"] and draft["cites"] == [] and draft["topic_id"] == 7
    assert draft["answer"] == "Fake answer: Opened items can be returned within 14 days if undamaged; a 15% restocking fee applies."
    manager.model.reply = "Not stated."
    assert write_draft(topic, manager, manager.masker)["answer"] == ""  # nothing there: the admin writes it
    faq = write_draft(Topic(8, "en", [], ["How long does standard delivery take?"], gaps, 1.0, NOW, NOW), manager, manager.masker)
    assert faq["near_entry"] == faq["question"] == "How long does standard delivery take?"  # an edit of that entry
    assert faq["needs_source"] and faq["answer"] == index.chunks[0].metadata["answer"]  # no person's reply: the entry's own to start from


def test_a_draft_near_an_existing_entry_edits_it_and_dismissing_it_brings_the_entry_back(settings, store):
    from chatbot.dialogue import DialogueManager
    from chatbot.embeddings import FakeEmbeddings
    from chatbot.gaps import Topic, approve, dismiss, write_draft
    from chatbot.kb import KnowledgeBase
    from chatbot.llm import FakeChatModel
    from chatbot.prompts import Prompts
    from chatbot.retrieval import Retriever

    question = "How long does standard delivery take?"
    kb = KnowledgeBase(settings, FakeEmbeddings())

    def manager():
        return DialogueManager(settings, Retriever(kb.live(), FakeEmbeddings(), settings.retrieval), FakeChatModel(), Prompts(settings.prompts_dir))

    def entries():
        return [c.metadata["source"] for c in kb.live().chunks if c.metadata.get("question") == question]

    kb.open()
    old = manager().respond(question).finish().text
    gaps = [Gap(n, f"c{n}", question, NOW, [], {"handoff": "Standard delivery takes 2 to 4 business days since March."}, "en") for n in range(5)]
    fields = write_draft(Topic(9, "en", ["delivery"], [question], gaps, 5.0, NOW, NOW), manager(), manager().masker)
    assert fields["near_entry"] == question and fields["cites"] == [f"c{n}" for n in range(5)]
    draft = store.add_gap_draft(**fields)
    report = approve(store, kb, manager().masker, draft.id, "tester")
    assert report.embedded_chunks == 1 and entries() == ["gap-answers.csv"]  # one entry, not a duplicate beside the old
    reply = manager().respond(question).finish()
    assert (reply.mode, reply.text) == ("faq", "Standard delivery takes 2 to 4 business days since March.")
    dismiss(store, kb, draft.id, "tester", "the carrier changed again")
    assert entries() == ["en/faq.csv"] and manager().respond(question).finish().text == old


def _at(store, model, row_id, when):
    from sqlalchemy import update

    with store._session() as s:
        s.execute(update(model).where(model.id == row_id).values(created=when))


def test_the_resolution_metrics_match_a_hand_count(store):
    from chatbot.store import Conversation, Feedback, GapDraft, Message

    day, before = datetime(2026, 11, 20, 10, 0), datetime(2026, 11, 19, 10, 0)

    def conversation(turns, when, down=False, handoff=False):
        c = store.create_conversation("site", f"v{len(store.list_conversations())}")
        _at(store, Conversation, c.id, when)
        last = None
        for question, mode in turns:
            for m in (store.add_message(c.id, "user", question), last := store.add_message(c.id, "assistant", "(reply)", mode=mode)):
                _at(store, Message, m.id, when)
        if down:
            _at(store, Feedback, store.add_feedback(c.id, last.id, -1).id, when)
        if handoff:
            store.set_status(c.id, "handoff")

    conversation([("How long is delivery?", "faq")], day)  # resolved
    conversation([("Can I return it?", "generate")], day, down=True)  # answered, thumbed down
    conversation([("Gift wrap?", "abstain")], day, handoff=True)  # refused, handed off
    conversation([("Do you ship abroad?", "generate"), ("Do you ship abroad?", "generate")], day)  # asked again
    conversation([("What is the warranty?", "generate")], before)  # resolved, the day before
    metrics = store.resolution_metrics(days=30, now=day + timedelta(days=1))
    by_day = {r["day"]: r for r in metrics["days"]}
    assert {k: by_day["2026-11-20"][k] for k in ("conversations", "resolved", "handed_off", "answers", "abstained", "thumbs_down")} == {
        "conversations": 4, "resolved": 1, "handed_off": 1, "answers": 5, "abstained": 1, "thumbs_down": 1}
    assert (by_day["2026-11-19"]["conversations"], by_day["2026-11-19"]["resolved"], by_day["2026-11-19"]["answers"]) == (1, 1, 1)
    total = metrics["total"]
    assert (total["resolution_rate"], total["containment"], total["handoff_rate"]) == (0.4, 0.8, 0.2)
    assert (total["abstain_rate"], total["thumbs_down_rate"]) == (round(1 / 6, 4), round(1 / 6, 4))
    assert store.resolution_metrics(days=30, now=day + timedelta(days=60))["total"]["resolution_rate"] is None  # nothing in the window


def test_the_per_topic_metrics_and_the_time_to_close_match_a_hand_count(store):
    from chatbot.store import Conversation, Feedback, GapDraft, Message

    first = datetime(2026, 11, 10, 9, 0)

    def ask(question, mode, when, down=False, handoff=False):
        c = store.create_conversation("site", f"v{len(store.list_conversations())}").id
        _at(store, Conversation, c, when)
        asked, replied = _turn(store, c, question, mode)
        for m in (asked, replied):
            _at(store, Message, m.id, when)
        if down:
            _at(store, Feedback, store.add_feedback(c, replied.id, -1).id, when)
        if handoff:
            store.add_message(c, "assistant", "(notice)", mode="handoff")
        return c, asked.id

    gift, other = store.save_gap_topics([{"id": None, "lang": "en", "centroid": [1.0], "first_seen": first},
                                         {"id": None, "lang": "en", "centroid": [0.0], "first_seen": first}])
    members = {}
    for when, mode, down, handoff, topic in [
        (first, "abstain", False, True, gift),  # refused, handed off
        (first, "abstain", False, False, gift),  # refused
        (first + timedelta(days=1), "generate", True, False, gift),  # answered, thumbed down
        (first + timedelta(days=4), "faq", False, False, gift),  # after the approval: resolved, closing it
        (first + timedelta(days=5), "faq", False, False, gift),  # resolved
        (first + timedelta(days=1), "abstain", False, False, other),  # a topic with no draft
    ]:
        c, m = ask("Do you gift wrap?", mode, when, down, handoff)
        members[m] = (c, topic)
    store.save_gap_members(members, first - timedelta(days=1))
    draft = store.add_gap_draft(topic_id=gift, lang="en", question="Do you gift wrap?", answer="Yes, USD 4 an item.")
    store.review_gap_draft(draft.id, "approved", "admin")
    with store._session() as s:
        s.get(GapDraft, draft.id).updated = first + timedelta(days=3)

    metrics = store.topic_metrics(days=30, now=first + timedelta(days=6))
    rows = {t["topic"]: t for t in metrics["topics"]}
    assert {k: rows[gift]["total"][k] for k in ("questions", "answered", "resolved", "handed_off", "abstained", "thumbs_down")} == {
        "questions": 5, "answered": 3, "resolved": 2, "handed_off": 1, "abstained": 2, "thumbs_down": 1}
    assert [(d["day"], d["questions"], d["resolution_rate"]) for d in rows[gift]["days"]] == [
        ("2026-11-10", 2, 0.0), ("2026-11-11", 1, 0.0), ("2026-11-14", 1, 1.0), ("2026-11-15", 1, 1.0)]
    assert rows[gift]["total"]["resolution_rate"] == 0.4 and rows[gift]["total"]["handoff_rate"] == 0.2
    assert rows[gift]["days_to_close"] == 4.0 and rows[gift]["answered_since"].startswith("2026-11-14")
    assert rows[other]["approved"] is None and rows[other]["days_to_close"] is None and rows[other]["total"]["abstained"] == 1
    store.save_gap_members({}, first - timedelta(days=1))  # a new run replaces the window's memberships
    assert store.topic_metrics(days=30, now=first + timedelta(days=6))["topics"] == []


def test_one_rating_per_answer_a_reason_added_after_a_thumbs_down(store):
    c = store.create_conversation("site", "visitor").id
    _, answer = _turn(store, c, "Can I return it?", "generate")
    store.add_feedback(c, answer.id, -1)
    store.add_feedback(c, answer.id, -1, "it missed the fee")  # the reason the widget asks for next
    assert store.gap_messages(NOW - timedelta(days=365))[1] == {answer.id: "it missed the fee"}
    store.add_feedback(c, answer.id, 1)  # a changed mind: up, the reason gone with the down
    assert store.gap_messages(NOW - timedelta(days=365))[1] == {}
    rated = [m["feedback"] for m in store.export(conversation_id=c)["conversations"][0]["messages"] if m["id"] == answer.id]
    assert rated == [[{"rating": 1, "comment": ""}]]  # one row, updated
