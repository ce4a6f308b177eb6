"""A knowledge change replayed before it goes live (`chatbot/replay.py`, `kb add|remove --dry-run`),
on fakes: the stored questions and the labelled sets, what would change, the harmful change flagged,
and nothing published."""

from __future__ import annotations

import json

from chatbot.store import Store, database_url

LABELLED = [
    {"id": "1", "history": [], "question": "How long does standard delivery take?", "gold_ids": ["en/faq.csv#0"], "lang": "en"},
    {"id": "2", "history": [], "question": "How do I reset my password?", "gold_ids": ["en/faq.csv#2"], "lang": "en"},
    {"id": "3", "history": [], "question": "Can opened items be returned within 14 days?", "gold_ids": ["en/returns.md#2"], "lang": "en"},
    {"id": "4", "history": [], "question": "What is the capital of France?", "gold_ids": [], "lang": "en"},
]


def _setup(tmp_path, monkeypatch, knowledge_dir):
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CHATBOT_KNOWLEDGE_DIR", str(knowledge_dir))
    (tmp_path / "data" / "evalsets").mkdir(parents=True)
    (tmp_path / "data" / "evalsets" / "shop.jsonl").write_text("".join(json.dumps(q) + "\n" for q in LABELLED), encoding="utf-8")
    store = Store(database_url("", tmp_path / "data"))
    c = store.create_conversation("site", "visitor").id
    store.add_message(c, "user", "Do you ship abroad?", lang="en")
    store.add_message(c, "assistant", "We only ship within the country.", mode="faq")
    return store


def test_a_harmful_change_is_flagged_by_the_replay_and_nothing_is_published(tmp_path, monkeypatch, capsys, knowledge_dir):
    from chatbot.cli import main

    _setup(tmp_path, monkeypatch, knowledge_dir)
    assert main(["--profile", "test", "kb", "list", "--json"]) == 0
    before = json.loads(capsys.readouterr().out)
    # A new en/faq.csv that drops the delivery and password entries (replacing the live one by name)
    change = tmp_path / "change"
    (change / "en").mkdir(parents=True)
    (change / "en" / "faq.csv").write_text("question,answer\nDo you ship abroad?,We only ship within the country.\n", encoding="utf-8")
    assert main(["--profile", "test", "kb", "add", "--dry-run", str(change)]) == 1  # flagged
    out = capsys.readouterr().out
    assert "tried (not published): replace en/faq.csv" in out
    assert "replayed 5 questions (4 labelled)" in out
    harmful = [line for line in out.splitlines() if line.startswith("HARMFUL")]
    assert len(harmful) == 2 and all("answer → abstain" in line or "abstain" in line.split(":")[0] for line in harmful), out
    assert any("How long does standard delivery take?" in line for line in harmful) and any("reset my password" in line for line in harmful)
    assert main(["--profile", "test", "kb", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == before  # nothing went live


def test_a_harmless_change_replays_without_a_flag(tmp_path, monkeypatch, capsys, knowledge_dir):
    from chatbot.cli import main

    _setup(tmp_path, monkeypatch, knowledge_dir)
    extra = tmp_path / "gift-wrap.csv"
    extra.write_text("question,answer\nDo you offer gift wrapping?,Yes: gift wrap is USD 4 per item.\n", encoding="utf-8")
    assert main(["--profile", "test", "kb", "add", "--dry-run", str(extra)]) == 0
    out = capsys.readouterr().out
    assert "tried (not published): add gift-wrap.csv" in out and "0 for the worse on a labelled set" in out and "HARMFUL" not in out
    assert main(["--profile", "test", "kb", "remove", "--dry-run", "en/returns.md"]) == 1  # the opened-items question loses its passage
    assert "HARMFUL answer → abstain: Can opened items be returned within 14 days?" in capsys.readouterr().out


def test_the_admin_page_tries_an_upload_first_and_shows_the_replay(settings, tmp_path):
    from types import SimpleNamespace

    from chatbot.embeddings import FakeEmbeddings
    from chatbot.kb import KnowledgeBase
    from chatbot.llm import FakeChatModel
    from chatbot.runtime import IndexWatcher, build_dialogue_manager
    from chatbot.staff import Accounts, hash_password
    from chatbot.web.admin import build_admin_ui

    store = Store(database_url("", settings.data_dir))
    store.add_user("ada", "admin", hash_password("a long admin password"))
    (settings.data_dir / "evalsets").mkdir(parents=True)
    (settings.data_dir / "evalsets" / "shop.jsonl").write_text("".join(json.dumps(q) + "\n" for q in LABELLED), encoding="utf-8")
    manager = build_dialogue_manager(settings, FakeChatModel())
    watcher = IndexWatcher(KnowledgeBase(settings, FakeEmbeddings()), manager)
    ui = build_admin_ui(watcher.kb, watcher, store, Accounts(store))
    try_upload = next(f.fn for f in ui.fns.values() if f.fn is not None and f.fn.__name__ == "try_upload")
    change = tmp_path / "faq.csv"  # the name of no live document: added beside en/faq.csv
    change.write_text("question,answer\nHow long does standard delivery take?,Standard delivery takes 9 days.\n", encoding="utf-8")
    before = watcher.kb.documents()
    shown = try_upload([str(change)], SimpleNamespace(username="ada", client=SimpleNamespace(host="127.0.0.1")), progress=lambda *a, **k: None)
    assert shown.startswith("**Tried, not published.** 4 questions replayed (4 labelled)")
    assert "1 would change, none for the worse" in shown and ": How long does standard delivery take? (shop.jsonl)" in shown  # the new entry comes first
    # answered again on both versions: the curated entry of the live document still wins, so the answer stays
    assert "  - was: Standard delivery takes 3 to 5 business days.\n  - **would be:** Standard delivery takes 3 to 5 business days." in shown
    assert watcher.kb.documents() == before


def test_only_the_changed_questions_are_answered_again_and_a_stored_one_keeps_the_answer_it_got(settings, tmp_path):
    from chatbot.embeddings import FakeEmbeddings
    from chatbot.kb import KnowledgeBase, Upload
    from chatbot.llm import FakeChatModel
    from chatbot.replay import Asked, lines, replay, stored_questions
    from chatbot.runtime import build_dialogue_manager

    store = Store(database_url("", settings.data_dir))
    c = store.create_conversation("site", "visitor").id
    store.add_message(c, "user", "How long does standard delivery take?", lang="en")
    store.add_message(c, "assistant", "(what it was told then)", mode="faq")
    store.add_message(c, "user", "What is the capital of France?", lang="en")
    store.add_message(c, "assistant", "(refused)", mode="abstain")
    asked = stored_questions(store) + [Asked("Can opened items be returned within 14 days?", [], "shop.jsonl", True)]
    assert [a.answer for a in asked] == ["(what it was told then)", "(refused)", ""]
    model = FakeChatModel()
    manager = build_dialogue_manager(settings, model)
    kb = KnowledgeBase(settings, FakeEmbeddings())
    kb.open()
    edit = "question,answer,replaces\nHow long does standard delivery take?,Standard delivery takes 9 days.,How long does standard delivery take?\n"
    trial = kb.try_change([Upload("gap-answers.csv", edit.encode())])  # an edit of the entry (`kb.replaced_questions`)
    result = replay(manager, trial.index, asked)
    assert [(c.asked.question, c.before_answer, c.after_answer) for c in result["changes"]] == [
        ("How long does standard delivery take?", "(what it was told then)", "Standard delivery takes 9 days.")]
    assert result["answered_again"] == 1 and model.calls == []  # a curated answer: no LM call; the unchanged ones not answered at all
    assert "    now: Standard delivery takes 9 days." in lines(result)
    removal = kb.try_change(remove=("en/returns.md",))
    result = replay(manager, removal.index, asked)
    opened = next(c for c in result["changes"] if c.asked.origin == "shop.jsonl")
    assert opened.harmful and opened.after.mode == "abstain" and opened.before_answer and opened.after_answer != opened.before_answer
    assert replay(manager, removal.index, asked, answers=0)["changes"][0].after_answer is None


def test_a_dry_run_with_a_refused_file_says_so_and_exits_1(tmp_path, monkeypatch, capsys, knowledge_dir):
    from chatbot.cli import main

    _setup(tmp_path, monkeypatch, knowledge_dir)
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"\x00\x01 not a pdf")
    assert main(["--profile", "test", "kb", "add", "--dry-run", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "refused: bad.pdf: not a readable PDF" in out and "nothing would change" in out
