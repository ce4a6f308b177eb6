"""Staff accounts and roles: the role × action table over every admin-page action, the role × route
table over every route of the web app, signing in with argon2 hashes, and the lock-out that grows."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import gradio as gr
import pytest
from fastapi.testclient import TestClient

from chatbot.embeddings import FakeEmbeddings
from chatbot.kb import KnowledgeBase
from chatbot.llm import FakeChatModel
from chatbot.runtime import IndexWatcher, build_dialogue_manager
from chatbot.staff import FIRST_LOCK_S, FREE_TRIES, LONGEST_LOCK_S, ROLES, Accounts, LoginGuard, allowed, hash_password
from chatbot.store import Store, database_url
from chatbot.web.admin import build_admin_ui
from chatbot.web.app import create_app

PASSWORD = "correct horse battery"
# Every action of the admin page and the lowest role allowed it. An action missing here fails.
ACTIONS = {
    "refresh": "viewer", "listing": "viewer", "show": "viewer", "counts": "viewer", "find": "viewer", "metrics": "viewer", "detail": "viewer", "drafts_table": "viewer",
    "reply": "agent", "hand_back": "agent",
    "upload": "admin", "try_upload": "admin", "remove": "admin", "rebuild": "admin", "make_draft": "admin", "try_draft": "admin", "approve_draft": "admin", "dismiss_draft": "admin", "keys": "admin", "create": "admin", "delete": "admin",
    "export": "admin", "erase": "admin", "rows": "admin", "verify": "admin",
    "names": "owner", "add": "owner", "change": "owner", "drop": "owner",
}
LOADERS = {"keys", "names", "rows"}  # run on every page load: a role without the permission gets nothing, not an error
EVERYONE = {"visibility"}  # what each role sees


@pytest.fixture
def staffed(settings):
    store = Store(database_url("", settings.data_dir))
    for role in ROLES:
        store.add_user(f"{role}-user", role, hash_password(PASSWORD))
    store.create_site_key("Shop", ["https://shop.example.com"])  # so a loader has rows to give, or to keep from a role
    store.audit("cli:root", "user-add", "owner-user")
    return store


def _admin_ui(settings, store):
    manager = build_dialogue_manager(settings, FakeChatModel())
    watcher = IndexWatcher(KnowledgeBase(settings, FakeEmbeddings()), manager)
    return build_admin_ui(watcher.kb, watcher, store, Accounts(store))


def _actions(ui) -> dict:
    return {f.fn.__name__: f.fn for f in ui.fns.values() if f.fn is not None}


def test_every_admin_action_is_in_the_role_table_with_the_permission_it_checks(settings, staffed):
    actions = _actions(_admin_ui(settings, staffed))
    assert set(actions) - EVERYONE == set(ACTIONS), "an admin action is missing from the role table, or the table names one that is gone"
    for name, fn in actions.items():
        if name not in EVERYONE:
            from chatbot.staff import PERMISSIONS

            assert PERMISSIONS[fn.permission] == ACTIONS[name], name


@pytest.mark.parametrize("role", ROLES)
def test_each_role_may_do_exactly_what_the_table_says_on_the_server(settings, staffed, role):
    request = SimpleNamespace(username=f"{role}-user", client=SimpleNamespace(host="127.0.0.1"))
    for name, fn in _actions(_admin_ui(settings, staffed)).items():
        if name in EVERYONE:
            continue
        args = [request if p.name == "request" else "" for p in inspect.signature(fn).parameters.values() if p.default is inspect.Parameter.empty]
        expected = ROLES.index(role) >= ROLES.index(ACTIONS[name])
        try:
            result = fn(*args)
            refused = name in LOADERS and not (result if name == "rows" else result[0])
        except gr.Error as e:
            refused = "may not do this" in str(e)
        assert refused != expected, f"{role} {'may' if expected else 'may not'} {name}"


def test_the_server_refuses_an_action_a_role_may_not_do_over_http(settings, staffed):
    with TestClient(create_app(*_app_parts(settings))) as client:  # started: the admin page's queue runs
        for name, expected in (("agent-user", "event: error"), ("admin-user", "event: complete")):
            client.cookies.clear()
            assert client.post("/admin/login", data={"username": name, "password": PASSWORD}).status_code == 200
            event = client.post("/admin/gradio_api/call/create", json={"data": [f"site of {name}", "https://new.example.com"]}).json()["event_id"]
            stream = client.get(f"/admin/gradio_api/call/create/{event}", timeout=30).text
            assert expected in stream and ("may not do this" in stream) == (name == "agent-user"), stream
        assert [s.name for s in staffed.site_keys()] == ["Shop", "site of admin-user"]


def _app_parts(settings):
    manager = build_dialogue_manager(settings, FakeChatModel())
    return manager, IndexWatcher(KnowledgeBase(settings, FakeEmbeddings()), manager)


# Every route of the web app and who may use it. A route missing here fails.
ROUTES = {
    ("/api/session", "POST"): "a site's origin", ("/api/conversations", "POST"): "visitor",
    ("/api/conversations/{conversation_id}", "GET"): "visitor", ("/api/conversations/{conversation_id}/messages", "POST"): "visitor",
    ("/api/conversations/{conversation_id}/handoff", "POST"): "visitor", ("/api/conversations/{conversation_id}/feedback", "POST"): "visitor",
    ("/api/me/export", "GET"): "visitor", ("/api/me", "DELETE"): "visitor",
    ("/widget.js", "GET"): "anyone", ("/healthz", "GET"): "anyone",
    ("/openapi.json", "GET"): "anyone", ("/docs", "GET"): "anyone", ("/docs/oauth2-redirect", "GET"): "anyone", ("/redoc", "GET"): "anyone",
    ("/admin", "MOUNT"): "staff", ("/admin", "GET"): "anyone",  # a redirect to /admin/, the mount
    ("", "MOUNT"): "anyone",  # the chat page
}


def test_every_route_is_in_the_route_table_and_holds_to_it(settings, staffed):
    app = create_app(*_app_parts(settings))
    found = {(path, method.upper()) for path, operations in app.openapi()["paths"].items() for method in operations}
    for route in app.routes:  # and those outside the schema: the docs, the mounted pages
        if hasattr(route, "path"):
            found |= {(route.path, m) for m in (getattr(route, "methods", None) or {"MOUNT"}) if m != "HEAD"}
    assert found == set(ROUTES), f"routes not in the table: {sorted(found - set(ROUTES))}; gone: {sorted(set(ROUTES) - found)}"
    client = TestClient(app)
    for (path, method), who in ROUTES.items():
        url = path.replace("{conversation_id}", "x")
        if who == "visitor":  # no token (and no allowed origin): refused
            assert client.request(method, url, headers={"Origin": "https://nowhere.example"}).status_code in (401, 403), url
        elif who == "a site's origin":
            assert client.post(url, json={"site_key": "sk_x"}).status_code == 403
        elif who == "staff":
            assert client.get("/admin/config").status_code == 401
        else:
            assert client.request(method if method != "MOUNT" else "GET", url or "/").status_code == 200, url


def test_passwords_are_hashed_and_checked_and_the_env_password_signs_in_an_owner(tmp_path):
    store = Store(database_url("", tmp_path))
    store.add_user("mia", "agent", hash_password(PASSWORD))
    assert store.user("mia").password_hash.startswith("$argon2id$") and PASSWORD not in store.user("mia").password_hash
    accounts = Accounts(store, "admin", "env-secret-password")
    assert accounts.verify("mia", PASSWORD) and not accounts.verify("mia", "wrong password!")
    assert accounts.verify("admin", "env-secret-password") and accounts.role("admin") == "owner"
    assert not accounts.verify("nobody", PASSWORD) and accounts.role("nobody") is None
    assert not Accounts(store).verify("admin", "") and Accounts(store).role("admin") is None
    with pytest.raises(Exception, match="at least 12"):
        hash_password("short")
    assert allowed("owner", "users") and not allowed("admin", "users") and not allowed(None, "read")


def test_the_lock_out_starts_after_the_free_tries_and_doubles():
    now = [1000.0]
    guard = LoginGuard(clock=lambda: now[0])
    for _ in range(FREE_TRIES - 1):
        guard.failed("account:mia")
    assert guard.wait("account:mia") == 0
    guard.failed("account:mia")
    assert guard.wait("account:mia") == FIRST_LOCK_S
    now[0] += FIRST_LOCK_S
    guard.failed("account:mia")
    assert guard.wait("account:mia") == 2 * FIRST_LOCK_S
    for _ in range(20):
        now[0] += LONGEST_LOCK_S
        guard.failed("account:mia")
    assert guard.wait("account:mia") == LONGEST_LOCK_S
    assert guard.wait("account:other") == 0
    guard.succeeded("account:mia")
    assert guard.wait("account:mia") == 0


def test_repeated_wrong_passwords_lock_the_sign_in_and_every_try_is_audited(settings, staffed):
    client = TestClient(create_app(*_app_parts(settings)))
    for n in range(FREE_TRIES):  # the sign-in page sends multipart form data, a script may send urlencoded
        wrong = {"username": "agent-user", "password": "not the password"}
        sent = client.post("/admin/login", files={k: (None, v) for k, v in wrong.items()}) if n % 2 else client.post("/admin/login", data=wrong)
        assert sent.status_code == 400
    locked = client.post("/admin/login", data={"username": "agent-user", "password": PASSWORD})
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) >= FIRST_LOCK_S - 1 and "Too many failed sign-ins" in locked.text
    actions = [e.action for e in staffed.audit_log(action="")]
    assert actions.count("sign-in-failed") == FREE_TRIES and actions[0] == "sign-in-refused"
    assert {e.actor for e in staffed.audit_log(action="sign-in-failed")} == {"agent-user"}
    other = client.post("/admin/login", data={"username": "admin-user", "password": PASSWORD})
    assert other.status_code == 429  # the same address is locked out too, whichever the account
    assert staffed.audit_log(action="sign-in-failed")[0].address == "x"  # the test client's address, masked
    assert staffed.verify_audit()[1] is None


def test_an_admin_exports_and_erases_a_conversation_or_a_visitor_from_the_admin_page(settings, staffed):
    conversation = staffed.create_conversation("chat-page", "chat-page")
    staffed.add_message(conversation.id, "user", "a question to erase")
    first, second, other = (staffed.create_conversation("sk_shop", v) for v in ("visitor-a", "visitor-a", "visitor-b"))
    for c in (first, second, other):
        staffed.add_message(c.id, "user", f"question of {c.visitor}")
    actions = _actions(_admin_ui(settings, staffed))
    admin = SimpleNamespace(username="admin-user", client=SimpleNamespace(host="203.0.113.9"))
    exported = actions["export"](conversation.id, False, admin)
    assert "a question to erase" in open(exported, encoding="utf-8").read()
    with pytest.raises(gr.Error, match="I am sure"):
        actions["erase"](conversation.id, False, False, "All", admin)
    with pytest.raises(gr.Error, match="no visitor of their own"):  # chat-page conversations share one visitor name
        actions["erase"](conversation.id, True, True, "All", admin)
    note, *_ = actions["erase"](conversation.id, False, True, "All", admin)
    assert "1 messages" in note and staffed.conversation(conversation.id) is None
    assert open(actions["export"](first.id, True, admin), encoding="utf-8").read().count("question of visitor-a") == 2
    note, *_ = actions["erase"](first.id, True, True, "All", admin)
    assert "2 conversations" in note and staffed.conversation(second.id) is None and staffed.conversation(other.id) is not None
    rows = {(e.action, e.actor, e.address) for e in staffed.audit_log()}
    assert {("export", "admin-user", "203.0.113.x"), ("erase", "admin-user", "203.0.113.x")} <= rows
    assert staffed.audit_log(action="erase")[0].target == "visitor visitor-a of sk_shop"


def test_the_server_applies_the_retention_period_when_it_starts(settings, staffed):
    from datetime import datetime, timedelta

    from chatbot.store import Conversation

    old = staffed.create_conversation("chat-page", "chat-page")
    with staffed._session() as s:
        s.get(Conversation, old.id).updated = datetime.now() - timedelta(days=settings.privacy.retention_days + 1)
    with TestClient(create_app(*_app_parts(settings))):  # started: the daily purge runs once at once
        import time

        deadline = time.monotonic() + 10
        while staffed.conversation(old.id) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
    assert staffed.conversation(old.id) is None and staffed.audit_log(action="purge")[0].actor == "system"
