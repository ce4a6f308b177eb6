"""The real web app over HTTP: `chatbot serve` in a subprocess, driven with gradio_client."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

pytestmark = pytest.mark.slow


def _client(url):
    from gradio_client import Client

    return Client(url, verbose=False)


def _chat(client, message, chat=None):
    """Send a message in this client's session; the streamed updates and the final chat."""
    job = client.submit(message, chat or [], api_name="/chat")
    final = job.result(timeout=300)
    return job.outputs(), final[1]


def test_health_reports_the_index_and_model(server):
    body = httpx.get(f"{server}/healthz").json()
    assert body["status"] == "ok" and body["chunks"] > 100 and body["model"].startswith("llamacpp/")


def test_a_faq_answer_comes_with_its_source(server):
    _, chat = _chat(_client(server), "How long does standard delivery take?")
    assert chat[0]["role"] == "user" and chat[-1]["role"] == "assistant"
    answer = chat[-1]["content"]
    text = answer if isinstance(answer, str) else str(answer)
    assert "3–5 business days" in text and "**Sources**" in text and "en/faq.csv" in text


def test_a_generated_answer_streams_and_sessions_stay_separate(server):
    a, b = _client(server), _client(server)
    with ThreadPoolExecutor(2) as pool:
        first_a = pool.submit(_chat, a, "How much is express delivery?")
        first_b = pool.submit(_chat, b, "我的咖啡机坏了，保修几年？")
        (_, chat_a), (_, chat_b) = first_a.result(), first_b.result()
    updates, chat_a = _chat(a, "How long does it take to arrive?", chat_a)  # a follow-up the LM answers
    assert len(updates) > 2, "the answer was not streamed"
    text = str(chat_a[-1]["content"])
    assert "How fast is express delivery" in text or "Delivery options, times and fees" in text
    assert all("咖啡机" not in str(m["content"]) for m in chat_a)
    assert "来源" in str(chat_b[-1]["content"])


@pytest.mark.parametrize(("message", "expected"), [("   ", "Your message is empty"), ("x" * 20000, "over the limit of 2000")])
def test_bad_messages_get_a_clear_reply_and_the_chat_goes_on(server, serve_data, message, expected):
    from chatbot.store import Store, database_url

    client = _client(server)
    _, chat = _chat(client, message)
    assert expected in str(chat[-1]["content"])
    assert [m["role"] for m in chat] == ["assistant"]  # the refused message is not shown as sent
    rows = Store(database_url("", serve_data)).list_conversations()
    assert not any(message.strip() and r["first"].startswith(message[:100]) for r in rows)  # nor stored, as in the API
    _, chat = _chat(client, "What payment methods do you accept?", chat)
    assert "**Sources**" in str(chat[-1]["content"])


def test_markup_in_a_message_is_shown_as_text_in_the_chat_page(server):
    _, chat = _chat(_client(server), '<img src=x onerror="alert(1)"> where is my order?')
    shown = str(chat[0]["content"])
    assert "&lt;img src=x" in shown and "<img" not in shown


def test_chat_page_turns_are_stored_for_the_admin(server, serve_data):
    from chatbot.store import Store, database_url

    question = "What payment methods do you accept? (stored-turn test)"
    _chat(_client(server), question)
    rows = [r for r in Store(database_url("", serve_data)).list_conversations() if r["first"] == question]
    assert rows and rows[0]["site_key"] == "chat-page" and rows[0]["messages"] == 2


def test_a_10_mb_body_gets_a_413_reply_over_http_and_the_server_goes_on(server, serve_data):
    from tests.integration.conftest import run_cli

    origin = "https://big.example.com"
    made = run_cli("sitekey", "add", "Big bodies", "--origin", origin, data_dir=serve_data)
    assert made.returncode == 0, made.stderr
    token = httpx.post(f"{server}/api/session", json={"site_key": made.stdout.strip()}, headers={"Origin": origin}).json()["token"]
    headers = {"Origin": origin, "Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    conversation = httpx.post(f"{server}/api/conversations", headers=headers).json()["id"]
    body = b'{"content": "' + b"x" * (10 * 2**20) + b'"}'
    reply = httpx.post(f"{server}/api/conversations/{conversation}/messages", content=body, headers=headers, timeout=60)
    assert reply.status_code == 413 and "security.max_body_kb" in reply.json()["error"], reply.text
    assert httpx.get(f"{server}/api/conversations/{conversation}", headers=headers).json()["messages"] == []
    assert httpx.get(f"{server}/healthz").json()["status"] == "ok"
