"""Personal data masked on arrival (`chatbot/privacy.py`), and the store's privacy duties on a real
SQLite file: retention, export and erasure per visitor, the hash-chained audit log."""

from __future__ import annotations

import json
import random
import sqlite3
import time
from datetime import datetime, timedelta

import pytest

from chatbot.privacy import KINDS, Masker, mask_address
from chatbot.store import Store, database_url
from tests.pii import KEPT, NOT_A_CARD, PII_MESSAGE, SECRETS, UNIONPAY, VALID_ID, WRONG_ID



@pytest.mark.parametrize(("text", "masked"), [
    (f"身份证{VALID_ID}", "身份证[id ••••002X]"),
    (f"身份证{WRONG_ID}", f"身份证{WRONG_ID}"),
    (f"card {UNIONPAY}.", "card [card ••••0128]."),
    (f"card {NOT_A_CARD}.", f"card {NOT_A_CARD}."),
    ("Visa 4242 4242 4242 4242 exp 12/27", "Visa [card ••••4242] exp 12/27"),
    ("card 4242-4242-4242-4242 12", "card [card ••••4242] 12"),
    ("我的电话+8613800138000谢谢", "我的电话[phone ••••8000]谢谢"),
    ("手机13800138000", "手机[phone ••••8000]"),
    ("call +86 138 0013 8000 or 0086 13800138000", "call [phone ••••8000] or [phone ••••8000]"),
    ("UK +44 20 7946 0958, US +1 (415) 555-2671", "UK [phone ••••0958], US [phone ••••2671]"),
    ("order 12345, order 20261203001, tracking 2026120300112", "order 12345, order 20261203001, tracking 2026120300112"),
    ("write to Jane.Doe+shop@example.co.uk.", "write to [email ••••o.uk]."),
    ("IBAN GB82 WEST 1234 5698 7654 32 please", "IBAN [iban ••••5432] please"),
    ("IBAN GB82 WEST 1234 5698 7654 33", "IBAN GB82 WEST 1234 5698 7654 33"),
    ("no personal data here: 14 days, USD 6.95", "no personal data here: 14 days, USD 6.95"),
])
def test_each_kind_is_masked_only_where_its_check_holds(text, masked):
    assert Masker().mask(text) == masked


def test_the_message_the_web_tests_send_keeps_only_what_fails_its_check():
    masked = Masker().mask(PII_MESSAGE)
    assert not any(s in masked for s in SECRETS) and all(k in masked for k in KEPT)


def test_an_id_that_also_passes_luhn_is_masked_as_an_id():
    from stdnum import luhn

    rng = random.Random(1)
    from stdnum.cn import ric

    for _ in range(2000):  # an 18-digit ID whose digits also pass Luhn: the ID's finder wins
        body = f"{rng.randint(110000, 659999)}19{rng.randint(50, 99)}0{rng.randint(1, 9)}1{rng.randint(0, 8)}{rng.randint(100, 999)}"
        number = body + ric.calc_check_digit(body + "0")
        if luhn.is_valid(number):
            assert Masker().mask(number).startswith("[id ")
            return
    pytest.fail("no such number found")


def test_masking_is_configured_per_kind():
    text = f"mail a@b.example, phone 13800138000, card {UNIONPAY}"
    assert Masker(["email"]).mask(text) == f"mail [email ••••mple], phone 13800138000, card {UNIONPAY}"
    assert Masker([]).mask(text) == text
    with pytest.raises(ValueError, match="allowed"):
        Masker(["passport"])
    assert set(KINDS) == {"cn_id", "card", "iban", "phone", "email"}


HOSTILE = {  # 100 KB each: long digit runs, near-miss groups, many @, many real numbers
    "spaced digits": "1 " * 50_000,
    "one digit run": "7" * 100_000,
    "ats": "a@" * 50_000,
    "long local parts": ("a" * 60 + "@") * 1_640,
    "plus signs": "+1 " * 33_334,
    "card groups": "4242 " * 20_000,
    "iban groups": "GB82 " * 20_000,
    "real mobiles": "13800138000 " * 8_334,
    "real cards": "4242 4242 4242 4242 " * 5_000,
    "international numbers": "+44 20 7946 0958 " * 5_883,
    "random": "".join(random.Random(0).choice("0123456789 -+@.abX") for _ in range(100_000)),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_message_is_masked_in_time_linear_in_its_length(name):
    """No pattern backtracks: ten times the text takes about ten times as long (a quadratic pattern
    would take a hundred). A ratio measured in one run, so a slow or busy machine does not fail it;
    the absolute time of 100 KB is `bench/masking.py`'s."""
    masker = Masker()
    small = min(_timed(masker.mask, HOSTILE[name][:10_000]) for _ in range(5))  # the best of five: the machine is shared
    large = min(_timed(masker.mask, HOSTILE[name][:100_000]) for _ in range(3))
    assert large < 30 * max(small, 1e-4), f"{name}: 10 KB {small * 1000:.1f} ms, 100 KB {large * 1000:.1f} ms"


def _timed(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def test_addresses_are_masked_for_the_audit_log():
    assert mask_address("203.0.113.77") == "203.0.113.x"
    assert mask_address("2001:db8:85a3:8d3:1319:8a2e:370:7348") == "2001:db8:85a3::x"
    assert mask_address("") == ""


# --- the store -------------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path):
    return Store(database_url("", tmp_path))


def _conversation(store, visitor, text, site="sk_shop", updated=None):
    conversation = store.create_conversation(site, visitor)
    message = store.add_message(conversation.id, "user", text)
    answer = store.add_message(conversation.id, "assistant", f"answer to {text}")
    store.add_feedback(conversation.id, answer.id, -1, f"comment on {text}")
    if updated is not None:
        with store._session() as s:
            from chatbot.store import Conversation

            s.get(Conversation, conversation.id).updated = updated
    return conversation, message


def test_retention_deletes_a_181_day_old_conversation_and_keeps_a_179_day_old_one(store):
    now = datetime(2026, 12, 3, 12, 0)
    old, _ = _conversation(store, "v-old", "old question", updated=now - timedelta(days=181))
    kept, _ = _conversation(store, "v-kept", "recent question", updated=now - timedelta(days=179))
    assert store.purge(180, now=now) == {"conversations": 1, "messages": 2, "feedback": 1}
    assert store.conversation(old.id) is None and store.messages(old.id) == []
    assert store.conversation(kept.id) is not None and len(store.messages(kept.id)) == 2
    assert store.purge(180, now=now) == {"conversations": 0, "messages": 0, "feedback": 0}  # safe to run again
    assert [e.action for e in store.audit_log()] == ["purge", "purge"]
    assert store.purge(0, now=now + timedelta(days=10_000))["conversations"] == 0  # 0 = kept until erased


def test_export_and_erase_one_visitor_leave_another_untouched(store, tmp_path):
    mine, _ = _conversation(store, "visitor-a", "unique-text-of-visitor-a")
    _conversation(store, "visitor-a", "second chat of visitor a")
    _conversation(store, "visitor-a", "same visitor id on another site", site="sk_other")
    theirs, _ = _conversation(store, "visitor-b", "unique-text-of-visitor-b")
    exported = store.export(site_key="sk_shop", visitor="visitor-a")
    assert [len(c["messages"]) for c in exported["conversations"]] == [2, 2]
    assert exported["conversations"][0]["messages"][1]["feedback"] == [{"rating": -1, "comment": "comment on unique-text-of-visitor-a"}]
    assert store.erase(site_key="sk_shop", visitor="visitor-a", actor="visitor:visitor-a", address="203.0.113.x") == {"conversations": 2, "messages": 4, "feedback": 2}
    assert store.export(site_key="sk_shop", visitor="visitor-a")["conversations"] == []
    assert len(store.export(site_key="sk_other", visitor="visitor-a")["conversations"]) == 1
    assert [m.content for m in store.messages(theirs.id)] == ["unique-text-of-visitor-b", "answer to unique-text-of-visitor-b"]
    # nothing of the erased text is left in any table, nor anywhere in the database file
    with sqlite3.connect(tmp_path / "kefu.db") as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        dump = "\n".join(str(row) for t in tables for row in db.execute(f"SELECT * FROM {t}"))  # noqa: S608
    assert "visitor-a" in dump and "unique-text-of-visitor-a" not in dump and "unique-text-of-visitor-b" in dump
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("kefu.db*"))
    assert b"unique-text-of-visitor-a" not in raw and "second chat".encode() not in raw
    entry = store.audit_log(action="erase")[0]
    assert (entry.actor, entry.target, entry.address, entry.detail["messages"]) == ("visitor:visitor-a", "visitor visitor-a of sk_shop", "203.0.113.x", 4)


def test_erasing_one_conversation_keeps_the_visitors_others(store):
    one, _ = _conversation(store, "visitor-a", "first")
    other, _ = _conversation(store, "visitor-a", "second")
    assert store.erase(conversation_id=one.id)["conversations"] == 1
    assert store.conversation(one.id) is None and store.conversation(other.id) is not None


def test_the_audit_chain_verifies_and_fails_after_a_row_is_edited_in_sqlite(store, tmp_path):
    for n in range(5):
        store.audit("owner", "kb-add", f"doc-{n}.md", "203.0.113.x", {"version": n})
    assert store.verify_audit() == (5, None)
    with sqlite3.connect(tmp_path / "kefu.db") as db:
        db.execute("UPDATE audit_log SET target = 'something else' WHERE id = 3")
    assert store.verify_audit() == (3, 3)


def test_the_audit_chain_fails_when_its_last_row_is_deleted(store, tmp_path):
    for n in range(3):
        store.audit("owner", "sign-in", "", "203.0.113.x")
    with sqlite3.connect(tmp_path / "kefu.db") as db:
        db.execute("DELETE FROM audit_log WHERE id = 3")
    assert store.verify_audit() == (2, -1)


def test_two_stores_on_one_file_keep_one_chain(tmp_path):
    import threading

    stores = [Store(database_url("", tmp_path)) for _ in range(2)]

    def write(store, n):
        for i in range(20):
            store.audit(f"writer-{n}", "kb-add", str(i))

    threads = [threading.Thread(target=write, args=(s, n)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stores[0].verify_audit() == (40, None)


def test_the_privacy_and_audit_commands(tmp_path, monkeypatch, capsys):
    from chatbot.cli import main

    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path))
    store = Store(database_url("", tmp_path))
    mine, _ = _conversation(store, "visitor-a", "question of visitor a")
    _conversation(store, "visitor-b", "question of visitor b")
    _conversation(store, "visitor-c", "a year-old question", updated=datetime.now() - timedelta(days=365))
    assert main(["--profile", "test", "privacy", "purge"]) == 0
    assert "purged 1 conversations (2 messages, 1 feedback) not updated for 180 days" in capsys.readouterr().out
    assert main(["--profile", "test", "privacy", "export", "--conversation", mine.id]) == 0
    assert json.loads(capsys.readouterr().out)["conversations"][0]["messages"][0]["content"] == "question of visitor a"
    assert main(["--profile", "test", "privacy", "erase", "--visitor", "visitor-a"]) == 0
    assert "erased 1 conversations (2 messages, 1 feedback)" in capsys.readouterr().out
    assert main(["--profile", "test", "privacy", "erase", "--visitor", "visitor-a"]) == 1  # nothing left to erase
    assert store.conversation(mine.id) is None and len(store.export(visitor="visitor-b")["conversations"]) == 1
    capsys.readouterr()
    assert main(["--profile", "test", "audit", "list"]) == 0
    assert [line.split()[3] for line in capsys.readouterr().out.splitlines()] == ["erase", "erase", "export", "purge"]
    assert main(["--profile", "test", "audit", "verify"]) == 0
    with sqlite3.connect(tmp_path / "kefu.db") as db:
        db.execute("UPDATE audit_log SET actor = 'someone else' WHERE action = 'export'")
    assert main(["--profile", "test", "audit", "verify"]) == 1
    assert "row 2 was edited" in capsys.readouterr().out
