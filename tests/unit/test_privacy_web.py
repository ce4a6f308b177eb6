"""Privacy through the web app, on fakes but over real HTTP (uvicorn in a thread): personal data sent
through the API and the chat page is masked in every table, in the log at DEBUG, in the prompt the
LM is given and in the webhook; a visitor exports and erases their chats; the chat page refuses a
flood from one address while another address is served."""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import threading
import time

import httpx
import pytest
import uvicorn

from chatbot.embeddings import FakeEmbeddings
from chatbot.kb import KnowledgeBase
from chatbot.llm import FakeChatModel
from chatbot.runtime import IndexWatcher, build_dialogue_manager
from chatbot.store import Store, database_url
from chatbot.web.app import create_app
from tests.pii import KEPT, PII_MESSAGE, SECRETS

SHOP = "https://shop.example.com"


class Served:
    """The app under uvicorn on 127.0.0.1 in a thread; a client may speak from another loopback address."""

    def __init__(self, settings) -> None:
        self.model = FakeChatModel()
        manager = build_dialogue_manager(settings, self.model)
        self.app = create_app(manager, IndexWatcher(KnowledgeBase(settings, FakeEmbeddings()), manager))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        threading.Thread(target=self.server.run, daemon=True).start()
        while not self.server.started:
            time.sleep(0.02)

    def client(self, address: str = "127.0.0.1") -> httpx.Client:
        return httpx.Client(base_url=self.url, transport=httpx.HTTPTransport(local_address=address), timeout=60)

    def chat(self, message: str, address: str = "127.0.0.1") -> list[dict]:
        """One message to the chat page's `/chat` endpoint, as a browser would send it: the final chat."""
        with self.client(address) as client:
            event = client.post("/gradio_api/call/chat", json={"data": [message, []]}).json()["event_id"]
            stream = client.get(f"/gradio_api/call/chat/{event}").text
        blocks = [b for b in stream.strip().split("\n\n") if b.startswith("event: complete")]
        assert blocks, stream
        chat = json.loads(blocks[-1].split("data: ", 1)[1])[1]
        return [{"role": m["role"], "content": "".join(part.get("text", "") for part in m["content"]) if isinstance(m["content"], list) else m["content"]} for m in chat]

    def close(self) -> None:
        self.server.should_exit = True


@pytest.fixture
def served(settings):
    hook = _Webhook()
    settings.handoff.webhook_url = hook.url
    settings.retrieval.answer_threshold = {"en": -1.0, "zh": -1.0}  # every turn reaches the LM
    settings.retrieval.faq_threshold = 1.0
    settings.security.address_per_minute = 4
    served = Served(settings)
    served.hook = hook
    served.store = Store(database_url("", settings.data_dir))
    served.site_key = served.store.create_site_key("Shop", [SHOP]).key
    yield served
    served.close()
    hook.close()


class _Webhook:
    def __init__(self) -> None:
        import http.server

        self.received: list[bytes] = []
        outer = self

        class Hook(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                outer.received.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
        self.url = f"http://127.0.0.1:{self.server.server_port}/kefu"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, count: int) -> None:
        deadline = time.monotonic() + 10
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self.server.shutdown()


def _api_headers(served, client) -> dict:
    token = client.post("/api/session", json={"site_key": served.site_key}, headers={"Origin": SHOP}).json()["token"]
    return {"Origin": SHOP, "Authorization": f"Bearer {token}"}


def _every_table(data_dir) -> str:
    with sqlite3.connect(data_dir / "kefu.db") as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return "\n".join(str(row) for t in tables for row in db.execute(f"SELECT * FROM {t}"))  # noqa: S608


def test_personal_data_is_masked_in_every_table_the_log_the_prompt_and_the_webhook(served, settings, caplog):
    caplog.set_level(logging.DEBUG)
    with served.client() as client:  # through the API (the widget's way) ...
        headers = _api_headers(served, client)
        conversation = client.post("/api/conversations", headers=headers).json()["id"]
        reply = client.post(f"/api/conversations/{conversation}/messages", json={"content": PII_MESSAGE}, headers=headers)
        assert reply.status_code == 200 and "event: done" in reply.text
        assert client.post(f"/api/conversations/{conversation}/feedback", json={"message_id": 2, "rating": "down", "comment": PII_MESSAGE}, headers=headers).status_code == 200
        client.post(f"/api/conversations/{conversation}/messages", json={"content": "转人工，" + PII_MESSAGE}, headers=headers)
    chat = served.chat("What is your returns policy? " + PII_MESSAGE)  # ... and through the chat page
    served.hook.wait(1)

    assert PII_MESSAGE in chat[0]["content"]  # the customer's own view shows what they typed
    prompts = json.dumps(served.model.calls, ensure_ascii=False)
    webhook = b"".join(served.hook.received).decode()
    stored = _every_table(settings.data_dir)
    for place, text in (("the tables", stored), ("the LM's prompts", prompts), ("the webhook", webhook), ("the log", caplog.text)):
        assert not any(secret in text for secret in SECRETS), place
    assert len(served.model.calls) >= 2 and "[card ••••0128]" in prompts and "[id ••••002X]" in prompts
    assert "[phone ••••8000]" in webhook and all(kept in stored for kept in KEPT)
    assert stored.count("[card ••••0128]") >= 4  # two API messages, the feedback comment, the chat page's message


def test_a_visitor_exports_and_erases_their_chats_and_another_visitors_stay(served, settings):
    with served.client() as client:
        mine, theirs = _api_headers(served, client), _api_headers(served, client)
        for headers, text in ((mine, "my question about returns"), (theirs, "their question about delivery")):
            conversation = client.post("/api/conversations", headers=headers).json()["id"]
            client.post(f"/api/conversations/{conversation}/messages", json={"content": text}, headers=headers)
        exported = client.get("/api/me/export", headers=mine)
        assert exported.status_code == 200 and "attachment" in exported.headers["content-disposition"]
        assert [m["content"] for m in exported.json()["conversations"][0]["messages"]][0] == "my question about returns"
        preflight = client.options("/api/me", headers={"Origin": SHOP, "Access-Control-Request-Method": "DELETE"})
        assert "DELETE" in preflight.headers["access-control-allow-methods"]
        assert client.delete("/api/me", headers=mine).json() == {"erased": {"conversations": 1, "messages": 2, "feedback": 0}}
        assert client.get("/api/me/export", headers=mine).json()["conversations"] == []
        assert len(client.get("/api/me/export", headers=theirs).json()["conversations"]) == 1
        assert client.delete("/api/me", headers={"Origin": "https://evil.example"}).status_code == 403
    stored = _every_table(settings.data_dir)
    assert "my question about returns" not in stored and "their question about delivery" in stored
    actions = [(e.action, e.address) for e in served.store.audit_log()]
    assert ("erase", "127.0.0.x") in actions and ("export", "127.0.0.x") in actions
    assert served.store.verify_audit()[1] is None


def test_the_chat_page_refuses_a_flood_from_one_address_while_another_is_served(served):
    answers = [served.chat(f"How long does standard delivery take? ({n})", address="127.0.0.2")[-1]["content"] for n in range(7)]
    refused = [a for a in answers if "faster than we can take them" in a]
    assert len(refused) == 3 and not any("faster" in a for a in answers[:4])  # address_per_minute: 4
    other = served.chat("How long does standard delivery take?", address="127.0.0.3")
    assert "faster" not in other[-1]["content"] and other[0]["role"] == "user"
    zh = served.chat("标准快递多久能送到？", address="127.0.0.2")
    assert "太快" in zh[-1]["content"] and zh[0]["role"] == "assistant"  # refused, in Chinese, not shown as sent
