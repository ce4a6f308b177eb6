"""`chatbot serve` killed with SIGKILL in the middle of a streamed answer: after a restart every
stored turn is there (the SQLite file, WAL mode), and the visitor's token still works."""

from __future__ import annotations

import json
import signal

import httpx
import pytest

from tests.integration.conftest import run_cli, start_server

pytestmark = pytest.mark.slow
ORIGIN = "https://shop.example.com"
FAQS = ["How long does standard delivery take?", "Can I return an item I have already opened?", "如何重置密码？"]
GENERATED = "How long is the warranty on a toaster?"


def _tokens(events: str) -> list[str]:
    """The text of each `token` event of a server-sent event stream."""
    texts, event = [], ""
    for line in events.splitlines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: ") and event == "token":
            texts.append(json.loads(line[6:])["text"])
    return texts


def test_a_server_killed_mid_answer_loses_no_stored_turn(tmp_path):
    data = tmp_path / "data"
    site_key = run_cli("sitekey", "add", "Shop", "--origin", ORIGIN, data_dir=data).stdout.strip()
    proc, url = start_server(data, tmp_path / "serve.log")
    try:
        token = httpx.post(f"{url}/api/session", json={"site_key": site_key}, headers={"Origin": ORIGIN}).json()["token"]
        headers = {"Origin": ORIGIN, "Authorization": f"Bearer {token}"}
        conversation = httpx.post(f"{url}/api/conversations", headers=headers).json()["id"]
        answers = []
        for question in FAQS:
            reply = httpx.post(f"{url}/api/conversations/{conversation}/messages", json={"content": question}, headers=headers, timeout=120)
            answers.append("".join(_tokens(reply.text)))
        with httpx.stream("POST", f"{url}/api/conversations/{conversation}/messages", json={"content": GENERATED}, headers=headers, timeout=120) as stream:
            for line in stream.iter_lines():
                if line.startswith("event: token"):  # the answer has started streaming
                    proc.send_signal(signal.SIGKILL)
                    break
        proc.wait(30)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()

    proc, url = start_server(data, tmp_path / "serve.log")
    try:
        stored = httpx.get(f"{url}/api/conversations/{conversation}", headers=headers).json()["messages"]
        turns = [(m["role"], m["content"]) for m in stored]
        expected = [pair for q, a in zip(FAQS, answers, strict=True) for pair in (("user", q), ("assistant", a))]
        assert turns[:6] == expected
        assert turns[6] == ("user", GENERATED)  # the question being answered when the server died
    finally:
        proc.terminate()
        proc.wait(30)
