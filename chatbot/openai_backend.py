"""`OpenAIChatModel`: a `ChatModel` served by an OpenAI-compatible HTTP server (vLLM, SGLang,
llama.cpp's server, a hosted API), for larger models or several GPUs than Kefu runs itself.

It streams `/chat/completions` (Server-Sent Events), with a connect/read timeout, retries with
exponential back-off while nothing has been streamed yet (connection refused, 429, 5xx), and one
clear `ModelServerError` naming the server and what to do when it is down or failing. A yes/no
question's verdict grammar goes in the request field `llm.grammar_field` names, for servers that
take one (llama.cpp's: "grammar"). As with the
in-process backend, a request that gets no first token within `llm.max_wait_s` (a server busy with
other customers' answers) is given up with `ModelBusyError`, so the customer gets the quote at once
rather than a long wait; closing it lets the server drop it. The API key is
read from the environment variable `llm.api_key_env`, never from a file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterator

import httpx

from chatbot.config import LLMSettings
from chatbot.errors import ModelBusyError, ModelServerError
from chatbot.llm import opening_gbnf

log = logging.getLogger(__name__)
_RETRY_STATUS = {429, 500, 502, 503, 504}
_BACKOFF_S = 0.5
_HAN = re.compile(r"[\u3400-\u9fff]")


class _Retryable(Exception):
    pass


class OpenAIChatModel:
    """Chat completions from an OpenAI-compatible server, streamed."""

    def __init__(self, settings: LLMSettings) -> None:
        self.name = f"openai/{settings.model}"
        self._settings = settings
        self._base = settings.base_url.rstrip("/")
        key = os.environ.get(settings.api_key_env, "")
        # No byte for this long ends a request: the busy limit, or the server's timeout where it is shorter.
        self._wait_s = min(settings.timeout_s, settings.max_wait_s)
        timeout = httpx.Timeout(self._wait_s, connect=min(10.0, settings.timeout_s))
        self._client = httpx.Client(timeout=timeout, headers={"Authorization": f"Bearer {key}"} if key else {})

    def stream(self, messages: list[dict[str, str]], max_new_tokens: int | None = None, starts: tuple[str, ...] = ()) -> Iterator[str]:
        body = {
            "model": self._settings.model,
            "messages": messages,
            "stream": True,
            "max_tokens": max_new_tokens or self._settings.max_new_tokens,
            "temperature": self._settings.temperature,
        }
        if starts and self._settings.grammar_field:
            body[self._settings.grammar_field] = opening_gbnf(starts)
        for attempt in range(self._settings.retries + 1):
            streamed = False
            try:
                for piece in self._stream_once(body):
                    streamed = True
                    yield piece
                return
            except (httpx.TransportError, _Retryable) as e:
                if streamed:
                    raise ModelServerError(f"the LM server at {self._base} broke off mid-answer ({e})") from e
                if isinstance(e, httpx.ReadTimeout) and self._wait_s < self._settings.timeout_s:
                    raise ModelBusyError(f"the LM server at {self._base} began no answer within llm.max_wait_s={self._wait_s:g} s") from e
                if isinstance(e, httpx.ReadTimeout):
                    raise ModelServerError(f"the LM server at {self._base} sent nothing for {self._settings.timeout_s:.0f} s (llm.timeout_s)") from e
                if attempt == self._settings.retries:
                    raise ModelServerError(
                        f"the LM server at {self._base} is not answering after {attempt + 1} tries ({e}); "
                        f"start it, or check llm.base_url"
                    ) from e
                log.warning("LM server attempt %d failed (%s); retrying", attempt + 1, e)
                time.sleep(_BACKOFF_S * 2**attempt)

    def _stream_once(self, body: dict) -> Iterator[str]:
        with self._client.stream("POST", f"{self._base}/chat/completions", json=body) as response:
            if response.status_code in _RETRY_STATUS:
                raise _Retryable(f"HTTP {response.status_code}")
            if response.status_code >= 400:
                detail = response.read().decode("utf-8", "replace")[:300]
                raise ModelServerError(
                    f"the LM server at {self._base} refused the request: HTTP {response.status_code} {detail}; "
                    f"check llm.model and the key in ${self._settings.api_key_env}"
                )
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line.removeprefix("data:").strip()
                if data == "[DONE]":
                    return
                choices = json.loads(data).get("choices") or [{}]
                text = (choices[0].get("delta") or {}).get("content")
                if text:
                    yield text

    def count_tokens(self, text: str) -> int:
        """An estimate (the server's tokenizer is not here): a CJK character or 4 other characters a token."""
        han = len(_HAN.findall(text))
        return han + (len(text) - han + 3) // 4
