"""The public API in-process on fakes: sessions, streamed answers stored with their sources,
history, feedback, handoff; and the security rules: origins, tokens, rate limits, sizes."""

import json
import time

import pytest
from fastapi.testclient import TestClient

from chatbot.embeddings import FakeEmbeddings
from chatbot.kb import KnowledgeBase, Upload
from chatbot.llm import FakeChatModel
from chatbot.runtime import IndexWatcher, build_dialogue_manager
from chatbot.store import Store, database_url
from chatbot.web.app import create_app
from chatbot.privacy import Masker
from chatbot.web.security import RateLimiter, Tokens, load_secret
from tests.pii import PII_MESSAGE, SECRETS

SHOP = "https://shop.example.com"
OTHER = "https://other.example.org"


@pytest.fixture
def env(settings):
    settings.security.visitor_per_minute = 5
    store = Store(database_url("", settings.data_dir))
    shop = store.create_site_key("Shop", [SHOP]).key
    other = store.create_site_key("Other", [OTHER]).key
    manager = build_dialogue_manager(settings, FakeChatModel())
    client = TestClient(create_app(manager, IndexWatcher(KnowledgeBase(settings, FakeEmbeddings()), manager)))
    return client, store, shop, other, settings


def session(client, site_key, origin=SHOP):
    reply = client.post("/api/session", json={"site_key": site_key}, headers={"Origin": origin})
    assert reply.status_code == 200, reply.text
    return {"Origin": origin, "Authorization": f"Bearer {reply.json()['token']}"}


def events(response):
    out = []
    for block in response.text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_a_question_streams_tokens_then_sources_and_every_turn_is_stored(env):
    client, store, shop, _, _ = env
    headers = session(client, shop)
    conversation = client.post("/api/conversations", headers=headers).json()["id"]
    reply = client.post(f"/api/conversations/{conversation}/messages", json={"content": "How long does standard delivery take?"}, headers=headers)
    assert reply.headers["content-type"].startswith("text/event-stream")
    stream = events(reply)
    assert [name for name, _ in stream][-1] == "done" and stream[0][0] == "token"
    done = stream[-1][1]
    assert done["mode"] == "faq" and done["sources"][0]["source"] == "en/faq.csv"
    history = client.get(f"/api/conversations/{conversation}", headers=headers).json()
    assert [(m["role"], m["mode"]) for m in history["messages"]] == [("user", None), ("assistant", "faq")]
    assert history["messages"][1]["content"] == "Standard delivery takes 3 to 5 business days."
    assert client.post(f"/api/conversations/{conversation}/feedback", json={"message_id": done["message_id"], "rating": "down", "comment": "too slow"}, headers=headers).status_code == 200
    assert store.list_conversations("thumbs_down")[0]["id"] == conversation


def test_asking_for_a_person_hands_off_and_the_bot_stays_quiet_until_handed_back(env):
    client, store, shop, _, _ = env
    headers = session(client, shop)
    conversation = client.post("/api/conversations", headers=headers).json()["id"]
    stream = events(client.post(f"/api/conversations/{conversation}/messages", json={"content": "转人工"}, headers=headers))
    assert stream[-1][1]["status"] == "handoff" and store.conversation(conversation).status == "handoff"
    queued = events(client.post(f"/api/conversations/{conversation}/messages", json={"content": "How long does standard delivery take?"}, headers=headers))
    assert queued == [("queued", {"status": "handoff", "message_id": queued[0][1]["message_id"]})]
    store.add_message(conversation, "agent", "Hello, this is Mia from Lumen & Leaf.")
    roles = [m["role"] for m in client.get(f"/api/conversations/{conversation}?after=0", headers=headers).json()["messages"]]
    assert roles == ["user", "assistant", "user", "agent"]
    store.set_status(conversation, "bot")
    assert events(client.post(f"/api/conversations/{conversation}/messages", json={"content": "How long does standard delivery take?"}, headers=headers))[-1][1]["mode"] == "faq"


@pytest.mark.parametrize(("method", "path"), [
    ("post", "/api/session"), ("post", "/api/conversations"), ("get", "/api/conversations/x"), ("post", "/api/conversations/x/messages"),
    ("post", "/api/conversations/x/feedback"), ("post", "/api/conversations/x/handoff"), ("options", "/api/conversations"),
])
def test_a_disallowed_origin_gets_403_on_every_api_path(env, method, path):
    client, _, shop, _, _ = env
    for origin in ("https://evil.example.net", None):
        headers = {"Origin": origin} if origin else {}
        reply = getattr(client, method)(path, headers=headers) if method in ("get", "options") else client.post(path, headers=headers, json={"site_key": shop})
        assert reply.status_code == 403, (origin, reply.text)
        if method != "options":
            assert "origin not allowed" in reply.json()["error"]


def test_an_origin_allowed_for_another_site_key_is_refused_for_this_one(env):
    client, _, shop, other, _ = env
    assert client.post("/api/session", json={"site_key": shop}, headers={"Origin": OTHER}).status_code == 403
    headers = session(client, other, OTHER)
    assert client.post("/api/conversations", headers=headers | {"Origin": SHOP}).status_code == 403


def test_forged_expired_and_other_visitor_tokens_are_refused(env, settings):
    client, _, shop, other, _ = env
    headers = session(client, shop)
    conversation = client.post("/api/conversations", headers=headers).json()["id"]
    token = headers["Authorization"][7:]
    payload, signature = token.split(".")
    forged = f"{payload[:-2]}xx.{signature}"
    wrong_key = Tokens(b"not the server's secret", 3600).issue(shop, "a" * 22)
    expired = Tokens(load_secret("", settings.data_dir), 3600).issue(shop, "b" * 22, now=time.time() - 7200)
    for bad in (forged, wrong_key, expired, "nonsense"):
        reply = client.get(f"/api/conversations/{conversation}", headers={"Origin": SHOP, "Authorization": f"Bearer {bad}"})
        assert reply.status_code == 401 and "POST /api/session" in reply.json()["error"], bad
    stranger = session(client, shop)  # a valid token, but another visitor's conversation
    assert client.get(f"/api/conversations/{conversation}", headers=stranger).status_code == 404
    other_site = session(client, other, OTHER)
    assert client.get(f"/api/conversations/{conversation}", headers=other_site).status_code == 404


def test_a_flood_gets_429_with_retry_after_and_the_service_stays_up(env):
    client, _, shop, _, settings = env
    headers = session(client, shop)
    conversation = client.post("/api/conversations", headers=headers).json()["id"]
    codes = [client.post(f"/api/conversations/{conversation}/messages", json={"content": "hi"}, headers=headers).status_code for _ in range(8)]
    assert codes[: settings.security.visitor_per_minute] == [200] * settings.security.visitor_per_minute
    limited = client.post(f"/api/conversations/{conversation}/messages", json={"content": "hi"}, headers=headers)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1 and "try again in" in limited.json()["error"]
    assert client.get("/healthz").status_code == 200
    fresh = session(client, shop)  # another visitor is not held back by this one
    other_conversation = client.post("/api/conversations", headers=fresh).json()["id"]
    assert client.post(f"/api/conversations/{other_conversation}/messages", json={"content": "hi"}, headers=fresh).status_code == 200


def test_empty_and_oversized_messages_get_a_clear_error(env):
    client, _, shop, _, _ = env
    headers = session(client, shop)
    conversation = client.post("/api/conversations", headers=headers).json()["id"]
    empty = client.post(f"/api/conversations/{conversation}/messages", json={"content": "   "}, headers=headers)
    assert empty.status_code == 422 and "empty" in empty.json()["error"]
    long = client.post(f"/api/conversations/{conversation}/messages", json={"content": "x" * 20000}, headers=headers)
    assert long.status_code == 413 and "2000" in long.json()["error"]


def test_a_body_over_the_limit_gets_413_before_it_is_read_and_nothing_is_stored(env):
    client, store, shop, _, settings = env
    headers = session(client, shop) | {"Content-Type": "application/json"}
    conversation = client.post("/api/conversations", headers=headers).json()["id"]
    url = f"/api/conversations/{conversation}/messages"
    body = json.dumps({"content": "x" * (settings.security.max_body_kb * 1024)}).encode()
    declared = client.post(url, content=body, headers=headers)  # Content-Length says it is too large
    assert declared.status_code == 413 and "limit of 64 KB" in declared.json()["error"] and "2000 characters" in declared.json()["error"]
    assert declared.headers["access-control-allow-origin"] == SHOP  # a browser can read why
    chunked = client.post(url, content=iter([body[:40000], body[40000:]]), headers=headers)  # no Content-Length
    assert chunked.status_code == 413 and "security.max_body_kb" in chunked.json()["error"]
    assert client.get(f"/api/conversations/{conversation}", headers=headers).json()["messages"] == []
    ok = client.post(url, json={"content": "How long does standard delivery take?"}, headers=headers)
    assert ok.status_code == 200 and [name for name, _ in events(ok)][-1] == "done"


def test_malformed_text_gets_a_clear_4xx_never_a_500(env):
    client, _, shop, _, _ = env
    headers = session(client, shop) | {"Content-Type": "application/json"}
    conversation = client.post("/api/conversations", headers=headers).json()["id"]
    surrogate = client.post(f"/api/conversations/{conversation}/messages", content=b'{"content": "\\ud800 hi"}', headers=headers)
    assert surrogate.status_code == 422 and "content" in surrogate.json()["error"] and "\\ud800" not in surrogate.text
    nul = client.post(f"/api/conversations/{conversation}/messages", content=b'{"content": "a\\u0000b"}', headers=headers)
    assert nul.status_code == 422 and "NUL" in nul.json()["error"]
    lone = client.post(f"/api/conversations/{conversation}/messages", content='{"content": "a\ud800b"}'.encode("utf-8", "surrogatepass"), headers=headers)
    assert lone.status_code in (400, 422) and lone.json()["error"], lone.text  # raw surrogate bytes: not UTF-8
    comment = client.post(f"/api/conversations/{conversation}/feedback", content=b'{"message_id": 1, "rating": "down", "comment": "\\udc00"}', headers=headers)
    assert comment.status_code == 422 and "comment" in comment.json()["error"]
    assert client.post(f"/api/conversations/{conversation}/messages", content=b"{not json", headers=headers).status_code == 422


def test_cors_headers_only_for_an_allowed_origin(env):
    client, _, _, _, _ = env
    preflight = client.options("/api/conversations", headers={"Origin": SHOP, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == SHOP
    assert "access-control-allow-origin" not in client.options("/api/conversations", headers={"Origin": "https://evil.example.net"}).headers


def test_the_rate_limiter_counts_a_sliding_minute(monkeypatch):
    import types

    import limits.storage.memory

    import chatbot.web.security

    clock = types.SimpleNamespace(time=lambda: now, monotonic=lambda: now)
    monkeypatch.setattr(limits.storage.memory, "time", clock)  # the library's clock and ours, one fake minute
    monkeypatch.setattr(chatbot.web.security, "time", clock)
    limiter, other = RateLimiter(2), RateLimiter(2, name="other")
    now = 1000.0
    assert limiter.check("a") == 0
    now = 1001.0
    assert limiter.check("a") == 0 and limiter.check("b") == 0 and other.check("a") == 0  # per key, per limiter
    now = 1002.0
    assert limiter.check("a") == pytest.approx(58, abs=0.01)
    now = 1060.5
    assert limiter.check("a") == 0  # the first event left the window
    assert limiter.check("a") == pytest.approx(0.5, abs=0.01)  # the second is still in it


def test_a_rate_limit_store_that_cannot_be_reached_lets_the_message_through(caplog):
    limiter = RateLimiter(1, "redis://127.0.0.1:9/0", name="api-visitor")  # nothing listens on port 9
    assert limiter.check("visitor-1") == 0 and limiter.check("visitor-1") == 0
    assert "rate limit api-visitor not counted" in caplog.text and "visitor-1" not in caplog.text


def test_the_widget_script_is_served(env):
    client = env[0]
    script = client.get("/widget.js")
    assert script.status_code == 200 and "attachShadow" in script.text and "innerHTML" not in script.text


def test_a_handoff_posts_a_notice_to_the_webhook(settings):
    import http.server
    import threading

    received = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    hook = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    settings.handoff.webhook_url = f"http://127.0.0.1:{hook.server_port}/kefu"
    store = Store(database_url("", settings.data_dir))
    shop = store.create_site_key("Shop", [SHOP]).key
    client = TestClient(create_app(build_dialogue_manager(settings, FakeChatModel())))
    headers = session(client, shop)
    conversation = client.post("/api/conversations", headers=headers).json()["id"]
    client.post(f"/api/conversations/{conversation}/messages", json={"content": PII_MESSAGE}, headers=headers)
    assert client.post(f"/api/conversations/{conversation}/handoff", headers=headers).json() == {"status": "handoff"}
    deadline = time.monotonic() + 10
    while not received and time.monotonic() < deadline:
        time.sleep(0.05)
    hook.shutdown()
    assert received == [{"event": "handoff", "conversation_id": conversation, "site_key": shop, "last_message": Masker().mask(PII_MESSAGE)}]
    assert not any(s in json.dumps(received, ensure_ascii=False) for s in SECRETS)  # the webhook gets the masked text


def test_the_api_is_described_in_openapi(env):
    paths = env[0].get("/openapi.json").json()["paths"]
    assert {"/api/session", "/api/conversations", "/api/conversations/{conversation_id}/messages"} <= set(paths)


def test_an_answer_after_a_removal_in_another_process_never_uses_the_removed_document(env):
    client, _, shop, _, settings = env
    headers = session(client, shop)
    conversation = client.post("/api/conversations", headers=headers).json()["id"]
    other_process = KnowledgeBase(settings, FakeEmbeddings())
    other_process.add([Upload("vouchers.csv", b"question,answer\nDo you sell paper gift vouchers?,Yes: paper vouchers.\n")])
    ask = lambda: events(client.post(f"/api/conversations/{conversation}/messages", json={"content": "Do you sell paper gift vouchers?"}, headers=headers))[-1][1]
    first = ask()
    assert first["sources"] and first["sources"][0]["source"] == "vouchers.csv", first  # the next turn, with no wait
    other_process.remove("vouchers.csv")
    assert all(s["source"] != "vouchers.csv" for s in ask()["sources"])
