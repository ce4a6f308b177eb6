"""The OpenAI-compatible backend against a local fake server: streaming, retries, clear failures."""

from __future__ import annotations

import socket

import pytest

from chatbot.config import LLMSettings
from chatbot.errors import ModelBusyError, ModelServerError
from chatbot.openai_backend import OpenAIChatModel
from tests.fake_openai import FakeOpenAIServer

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "How long is delivery?"}]


def _model(base_url: str, **settings) -> OpenAIChatModel:
    return OpenAIChatModel(LLMSettings(backend="openai", model="qwen2.5-7b", base_url=base_url, **settings))


def test_the_reply_streams_in_pieces_with_the_request_as_sent(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with FakeOpenAIServer() as server:
        pieces = list(_model(server.base_url, max_new_tokens=50, temperature=0.0).stream(MESSAGES))
    assert "".join(pieces) == "Standard delivery takes 3–5 business days." and len(pieces) == 6
    sent = server.requests[0]
    assert sent["model"] == "qwen2.5-7b" and sent["messages"] == MESSAGES and sent["stream"] is True
    assert sent["max_tokens"] == 50 and sent["authorization"] == "Bearer sk-test"


def test_the_verdict_grammar_goes_in_the_field_the_server_takes():
    from chatbot.llm import opening_gbnf

    starts = ("Yes, ", "No, ", "Not stated.")
    with FakeOpenAIServer() as server:
        list(_model(server.base_url).stream(MESSAGES, starts=starts))
        list(_model(server.base_url, grammar_field="grammar").stream(MESSAGES, starts=starts))
        list(_model(server.base_url, grammar_field="grammar").stream(MESSAGES))  # not a yes/no question
    assert ["grammar" in r for r in server.requests] == [False, True, False]
    assert server.requests[1]["grammar"] == opening_gbnf(starts)


def test_an_overloaded_server_is_retried_with_back_off():
    with FakeOpenAIServer(fail_first=2, fail_status=503) as server:
        text = "".join(_model(server.base_url, retries=2).stream(MESSAGES))
    assert text.startswith("Standard delivery") and len(server.requests) == 3


def test_a_server_that_stays_overloaded_fails_clearly():
    with FakeOpenAIServer(fail_first=10, fail_status=503) as server:
        with pytest.raises(ModelServerError, match=r"is not answering after 2 tries \(HTTP 503\)"):
            list(_model(server.base_url, retries=1).stream(MESSAGES))


def test_a_refused_request_is_not_retried_and_says_what_to_check():
    with FakeOpenAIServer(fail_first=10, fail_status=401) as server:
        with pytest.raises(ModelServerError, match="refused the request: HTTP 401 .*check llm.model and the key in \\$OPENAI_API_KEY"):
            list(_model(server.base_url, retries=3).stream(MESSAGES))
    assert len(server.requests) == 1


def test_a_server_that_is_down_fails_clearly():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    with pytest.raises(ModelServerError, match=f"LM server at http://127.0.0.1:{port}/v1 is not answering after 2 tries.*start it, or check llm.base_url"):
        list(_model(f"http://127.0.0.1:{port}/v1", retries=1).stream(MESSAGES))


def test_a_server_slow_to_its_first_token_is_given_up_as_busy_after_max_wait_s():
    import time

    with FakeOpenAIServer(first_token_s=3.0) as server:
        started = time.perf_counter()
        with pytest.raises(ModelBusyError, match=r"began no answer within llm.max_wait_s=0.5 s"):
            list(_model(server.base_url, max_wait_s=0.5, timeout_s=60, retries=2).stream(MESSAGES))
        assert time.perf_counter() - started < 2.5 and len(server.requests) == 1  # at once, and not retried
        assert "".join(_model(server.base_url, max_wait_s=5, timeout_s=60).stream(MESSAGES)).startswith("Standard delivery")


def test_token_counts_are_estimated_without_a_tokenizer():
    model = _model("http://127.0.0.1:1/v1")
    assert model.count_tokens("") == 0
    assert model.count_tokens("标准快递") == 4
    assert model.count_tokens("abcdefgh") == 2
