"""A batched generation engine: concurrent requests decode together on one transformers model.

It is a thin layer over transformers' own continuous batching (`ContinuousBatchingManager`, the
engine `transformers serve` builds on: a paged KV cache, a scheduler that admits new requests
between decode steps, per-request streaming and cancellation). What this module adds is what a
chat service needs around it:
- a blocking per-request token stream, so the sync `ChatModel.stream` interface stays the same;
- admission control: at most `max_requests` requests in flight (queued or decoding); one more is
  refused at once with `ModelBusyError` instead of queueing without bound;
- cancellation: a consumer that stops reading (a client that went away) cancels its request, which
  frees its KV-cache blocks and its admission slot.

The engine knows token ids only; tokenisation and chat templates stay in `llm.py`.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import uuid
from collections.abc import Iterator

from chatbot.errors import ModelBusyError

log = logging.getLogger(__name__)


class BatchedEngine:
    """Greedy (or sampled) generation for many concurrent requests over one model."""

    def __init__(
        self,
        model,
        *,
        eos_token_ids: list[int],
        pad_token_id: int,
        max_new_tokens: int,
        max_requests: int,
        temperature: float = 0.0,
        kv_cache_blocks: int | None = None,
        max_batch_tokens: int | None = None,
        request_timeout_s: float = 300.0,
        cuda_graphs: bool | None = None,
    ) -> None:
        from transformers import GenerationConfig
        from transformers.generation.configuration_utils import ContinuousBatchingConfig

        sampling = temperature > 0
        generation = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=sampling,
            temperature=temperature if sampling else None,
            top_p=None,
            top_k=None,
            eos_token_id=eos_token_ids or None,
            pad_token_id=pad_token_id,
        )
        # cuda_graphs None: transformers decides (graphs only where the attention needs no mask).
        batching = ContinuousBatchingConfig(num_blocks=kv_cache_blocks, max_batch_tokens=max_batch_tokens, use_cuda_graph=cuda_graphs)
        self._manager = model.init_continuous_batching(generation_config=generation, continuous_batching_config=batching)
        self._manager.start()
        self._max_requests = max_requests
        self._timeout = request_timeout_s
        self._in_flight = 0
        self._lock = threading.Lock()
        # Results arrive through callbacks run on an event loop of the engine's own.
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="engine-results", daemon=True).start()

    @property
    def in_flight(self) -> int:
        """Requests admitted and not yet finished or cancelled."""
        return self._in_flight

    def generate(self, prompt_ids: list[int], max_new_tokens: int | None = None) -> Iterator[int]:
        """Stream the new token ids for one prompt. Raises `ModelBusyError` when the engine is full.

        Closing the iterator early (or dropping it) cancels the request and frees its slot.
        """
        self._admit()
        request_id = uuid.uuid4().hex
        results: queue.Queue = queue.Queue()
        finished = False
        try:
            asyncio.run_coroutine_threadsafe(self._register(request_id, results.put), self._loop).result()
            self._manager.add_request(prompt_ids, request_id=request_id, max_new_tokens=max_new_tokens, streaming=True)
            sent = 0
            while not finished:
                try:
                    output = results.get(timeout=self._timeout)
                except queue.Empty:
                    raise TimeoutError(f"no token for {self._timeout:.0f} s; the engine may be stuck") from None
                if output.error:
                    raise RuntimeError(f"generation failed: {output.error}")
                new = output.generated_tokens[sent:]
                sent = len(output.generated_tokens)
                finished = output.is_finished()
                yield from new
        finally:
            if not finished:
                self._manager.cancel_request(request_id)
            with self._lock:
                self._in_flight -= 1

    def close(self) -> None:
        """Stop the engine's background threads."""
        self._manager.stop(block=True)
        self._loop.call_soon_threadsafe(self._loop.stop)

    def _admit(self) -> None:
        with self._lock:
            if self._in_flight >= self._max_requests:
                raise ModelBusyError(f"the model is serving {self._in_flight} requests, its limit (llm.max_requests); try again shortly")
            self._in_flight += 1

    async def _register(self, request_id: str, callback) -> None:
        self._manager.register_result_handler(request_id, callback)
