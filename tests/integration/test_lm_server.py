"""`llm.backend: openai` against a real OpenAI-compatible server: llama.cpp's own
(`python -m llama_cpp.server`) serving the packaged GGUF. Streaming through the chat's dialogue
manager, the request cancelled when its reader goes away, the read timeout and the busy limit, and retries while the
server is still starting."""

from __future__ import annotations

import logging
import time

import pytest

from chatbot.errors import ModelBusyError, ModelServerError
from chatbot.openai_backend import OpenAIChatModel
from chatbot.weights import resolve_gguf
from tests.lm_server import free_port, llama_server

pytestmark = pytest.mark.slow

ALIAS = "kefu-lm"
LONG = [{"role": "user", "content": "Write a long story about a lighthouse keeper and his cat, at least 600 words."}]
SHORT = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def gguf(default_settings):
    return resolve_gguf(default_settings.llm.model, default_settings.model_cache_dir)


@pytest.fixture(scope="module")
def lm(gguf, default_settings):
    # One request at a time, and a new one waits rather than cutting the running one short, so that
    # only the client going away can stop an answer.
    with llama_server(gguf, ALIAS, 2, default_settings.llm.context_tokens, extra=("--interrupt_requests", "False")) as server:
        yield server


def _model(settings, base_url: str, **llm) -> OpenAIChatModel:
    return OpenAIChatModel(settings.llm.model_copy(update={"backend": "openai", "base_url": base_url, "model": ALIAS} | llm))


def test_an_answer_streams_from_the_server_through_the_dialogue_manager(lm, default_settings):
    from chatbot.runtime import build_dialogue_manager

    # The busy limit (llm.max_wait_s) is the next tests' subject: here a cold server's first answer may take longer.
    llm = {"backend": "openai", "base_url": lm.base_url, "model": ALIAS, "max_wait_s": 120.0, "timeout_s": 120.0}
    settings = default_settings.model_copy(update={"llm": default_settings.llm.model_copy(update=llm)})
    manager = build_dialogue_manager(settings)
    assert manager.model.name == f"openai/{ALIAS}"
    reply = manager.respond("My kettle arrived this morning with a cracked lid. How long do I have to report it?")
    assert reply.mode == "generate"
    pieces = list(reply)
    assert len(pieces) > 1 and reply.text and reply.sources
    assert reply.checks is not None and not {"error", "busy"} & set(reply.checks)  # the server gave its sentence (shown or not)
    assert len(list(_model(default_settings, lm.base_url).stream(SHORT, max_new_tokens=16))) > 1  # token by token


def test_the_verdict_grammar_holds_on_the_server(lm, default_settings):
    starts = ("Yes, ", "No, ", "Not stated.")
    question = [{"role": "user", "content": "Is the sky green? Reply in one short sentence."}]
    text = "".join(_model(default_settings, lm.base_url, grammar_field="grammar").stream(question, max_new_tokens=30, starts=starts))
    assert text.startswith(starts), text


def test_a_reader_that_goes_away_stops_the_servers_answer(lm, default_settings):
    model = _model(default_settings, lm.base_url)
    long = model.stream(LONG, max_new_tokens=1000)
    assert [next(long) for _ in range(3)]
    long.close()  # as when the customer's connection closes mid-answer
    started = time.perf_counter()
    assert "".join(model.stream(SHORT, max_new_tokens=8))
    waited = time.perf_counter() - started
    assert waited < 5, f"the next answer waited {waited:.1f} s: the server kept generating the abandoned one"
    assert "Disconnected from client" in lm.output()


def test_a_server_that_sends_nothing_in_time_fails_clearly_or_as_busy(lm, default_settings):
    busy = _model(default_settings, lm.base_url).stream(LONG, max_new_tokens=1000)
    next(busy)  # the server is taken, and takes no other request until this one ends
    try:
        with pytest.raises(ModelServerError, match=r"sent nothing for 1 s \(llm.timeout_s\)"):
            list(_model(default_settings, lm.base_url, timeout_s=1.0, retries=0).stream(SHORT, max_new_tokens=8))
        with pytest.raises(ModelBusyError, match=r"began no answer within llm.max_wait_s=1 s"):  # the chat then quotes at once
            list(_model(default_settings, lm.base_url, timeout_s=60, max_wait_s=1.0).stream(SHORT, max_new_tokens=8))
    finally:
        busy.close()


def test_a_server_still_starting_is_retried_until_it_answers(gguf, default_settings, caplog):
    port = free_port()
    with llama_server(gguf, ALIAS, 1, 1024, port=port, wait=False):
        model = _model(default_settings, f"http://127.0.0.1:{port}/v1", retries=5)  # back-off 0.5, 1, 2, 4, 8 s
        with caplog.at_level(logging.WARNING, logger="chatbot.openai_backend"):
            assert "".join(model.stream(SHORT, max_new_tokens=8))
    assert "LM server attempt 1 failed" in caplog.text
