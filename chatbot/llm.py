"""`ChatModel`: stream a reply to a list of `{role, content}` chat messages.

Backends:
- `OpenAIChatModel` (`openai_backend.py`): an OpenAI-compatible server such as vLLM or SGLang.
- `LlamaCppChatModel` (llama-cpp-python) runs a GGUF on the CPU: the default, because on 2 cores it
  decodes the packaged Qwen2.5 GGUF about 3x faster than transformers and loads it in a second
  (bench/llm_backends.py measures both on the same prompts). A small pool of contexts serves
  several requests at once, each with its own KV cache; the weights are memory-mapped once. A
  request goes to the free context whose last prompt shares the longest opening with its own
  (`ContextPool`), so a context keeps the system text of one language in its cache.
- `TransformersChatModel` runs a hub model or a local folder (or a GGUF, de-quantised) with
  transformers: bf16 on CUDA, float32 on the CPU (bf16 prefill is 6x slower there). On CUDA,
  concurrent requests decode together through the batched engine (`engine.py`).
- `FakeChatModel`: deterministic, for unit tests and the test profile.

Each call gets its own stream; nothing per request lives on the shared model object. The model's own
chat template is used; generation stops at the end-of-turn token or after `max_new_tokens`.
This module decides nothing about what to answer: `dialogue.py` does.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from chatbot.config import LLMSettings
from chatbot.errors import ConfigError, ModelBusyError, ModelLoadError

log = logging.getLogger(__name__)
Message = dict[str, str]


class ChatModel(Protocol):
    """What the dialogue manager needs from a language model."""

    name: str

    def stream(self, messages: list[Message], max_new_tokens: int | None = None, starts: tuple[str, ...] = ()) -> Iterator[str]:
        """Yield the reply's text in pieces (never half a UTF-8 character). With `starts`, the reply
        should open with one of them (a verdict: "Yes", "No", "Not stated"): a backend that can
        constrain decoding enforces it (llama.cpp by a grammar; transformers' own `generate` by
        `OpeningTokens`); the others rely on the prompt (the OpenAI-compatible backend, and
        transformers' batched engine)."""
        ...

    def count_tokens(self, text: str) -> int:
        """How many tokens `text` takes in this model's vocabulary."""
        ...


class LlamaCppChatModel:
    """A GGUF run by llama.cpp, with `parallel` contexts for concurrent requests."""

    def __init__(self, path: Path, settings: LLMSettings) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as e:
            raise ModelLoadError("llama-cpp-python is not installed; run `make run` to install it") from e
        self.name = f"llamacpp/{path.name}"
        self._settings = settings
        threads = settings.threads or os.cpu_count() or 1
        try:
            contexts = [
                Llama(model_path=str(path), n_ctx=settings.context_tokens, n_threads=threads, n_threads_batch=threads, n_batch=512, verbose=False)
                for _ in range(settings.parallel)
            ]
        except (ValueError, RuntimeError, OSError) as e:
            raise ModelLoadError(f"llama.cpp could not load {path}: {e}; check the file or name another llm.model") from e
        self._pool = ContextPool(contexts)
        self._openings = SavedOpenings()
        self._tokenizer = contexts[0]

    def stream(self, messages: list[Message], max_new_tokens: int | None = None, starts: tuple[str, ...] = ()) -> Iterator[str]:
        prompt = [f"{m['role']}\x00{m['content']}" for m in messages]
        taken = self._pool.acquire(prompt, self._settings.max_wait_s)
        if taken is None:
            raise ModelBusyError(f"no llama.cpp context came free within llm.max_wait_s={self._settings.max_wait_s:g} s")
        llm, last = taken
        if last[:1] != prompt[:1]:  # its cache lacks this prompt's system text: restore one that has it
            self._openings.restore(llm, prompt[0])
        try:
            chunks = llm.create_chat_completion(
                messages=messages,
                grammar=_opening_grammar(starts) if starts else None,
                stream=True,
                max_tokens=max_new_tokens or self._settings.max_new_tokens,
                temperature=self._settings.temperature,
                top_k=1 if self._settings.temperature == 0 else 40,
            )
            for chunk in chunks:
                text = chunk["choices"][0]["delta"].get("content")
                if text:
                    yield text
            self._openings.keep(llm, prompt[0])  # after a whole answer only (it never raises)
        finally:
            self._pool.release(llm)

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.tokenize(text.encode("utf-8"), add_bos=False, special=False))


class ContextPool:
    """Free model contexts, each remembering the prompt it last read: its KV cache holds that
    prompt's tokens, and llama.cpp reads again only what follows the part a new prompt shares.
    `acquire` hands out the free context whose last prompt shares the most leading messages with the
    new one (then the most characters of the next), as llama.cpp's own server picks a slot by prompt
    similarity; where none shares even the system message, the one free the longest. With English
    and Chinese turns mixed, a context so keeps one language's system text instead of reading the
    other's anew (about 100 of a turn's 230 prompt tokens; `bench/llm_pool.py` measures it)."""

    def __init__(self, contexts: list) -> None:
        self._last: dict[int, list[str]] = {}
        self._free = list(contexts)  # the one free the longest first
        self._ready = threading.Condition()

    def acquire(self, prompt: list[str], timeout: float):
        """The best free context for `prompt` (its messages, each as one string) with the prompt it
        last read, waiting up to `timeout` s for one to come free; None if none did."""
        with self._ready:
            if not self._ready.wait_for(lambda: self._free, timeout=timeout):
                return None
            shares = [_shared(self._last.get(id(c), []), prompt) for c in self._free]
            best = max(range(len(self._free)), key=lambda i: shares[i])
            context = self._free.pop(best if shares[best][0] else 0)
            last, self._last[id(context)] = self._last.get(id(context), []), prompt
            return context, last

    def release(self, context) -> None:
        with self._ready:
            self._free.append(context)
            self._ready.notify()


class SavedOpenings:
    """A copy of a context's KV cache for each system text (one per language), taken once after a
    whole answer, so that a context whose cache holds the other language's does not read this one's
    anew when every context that has it is busy: restoring it copies about 3 MB (2 ms) where
    reading its 100 tokens takes about 0.6 s on 2 cores (`bench/llm_pool.py`). llama.cpp then reads
    only what follows the part of the restored prompt that the new one shares (`Llama.generate`'s
    prefix match), as when a context reuses its own cache: the same answer as reading the prompt
    whole, but for rare near-ties that the different batch shapes' rounding tips (one of the answer
    set's 182 items changed its wording). Uses llama-cpp-python's internals as of the pinned 0.3.36;
    any failure resets the context instead."""

    MOST = 8  # system texts kept (each about 3 MB); the oldest goes first

    def __init__(self) -> None:
        self._saved: dict[str, tuple] = {}
        self._lock = threading.Lock()

    def keep(self, llm, system: str) -> None:
        """Copy `llm`'s cache, which has just read a prompt opening with `system`, if none is kept."""
        with self._lock:
            if system in self._saved:
                return
        try:
            import ctypes

            import llama_cpp

            size = llama_cpp.llama_state_seq_get_size(llm._ctx.ctx, 0)
            data = (ctypes.c_uint8 * size)()
            written = llama_cpp.llama_state_seq_get_data(llm._ctx.ctx, data, size, 0)
            saved = (llm.input_ids[: llm.n_tokens].copy(), data, written)
        except Exception:  # an internal that moved: nothing kept, every prompt is read whole
            log.warning("could not copy a llama.cpp context's cache", exc_info=True)
            return
        with self._lock:
            self._saved.setdefault(system, saved)
            while len(self._saved) > self.MOST:
                self._saved.pop(next(iter(self._saved)))

    def restore(self, llm, system: str) -> bool:
        """Put the copy kept for `system` into `llm`'s cache: False if none is kept, or if it
        failed (`llm` then reset, so that the prompt is read whole)."""
        with self._lock:
            saved = self._saved.get(system)
        if saved is None:
            return False
        tokens, data, size = saved
        try:
            import llama_cpp

            llm._ctx.kv_cache_seq_rm(-1, 0, -1)
            if not llama_cpp.llama_state_seq_set_data(llm._ctx.ctx, data, size, 0):
                raise RuntimeError("llama_state_seq_set_data restored nothing")
            llm.input_ids[: len(tokens)] = tokens
            llm.n_tokens = len(tokens)
            llm._requires_eval = True  # the logits are not those of the last token: read at least one
        except Exception:
            log.warning("could not restore a llama.cpp context's cache; reading the prompt whole", exc_info=True)
            llm.reset()  # nothing counted as read: the next prompt is read whole, its cache cleared first
            return False
        return True


def _shared(a: list[str], b: list[str]) -> tuple[int, int]:
    """How many leading messages `a` and `b` share, and how many characters of the next."""
    whole = 0
    while whole < min(len(a), len(b)) and a[whole] == b[whole]:
        whole += 1
    rest = len(os.path.commonprefix([a[whole], b[whole]])) if whole < min(len(a), len(b)) else 0
    return whole, rest


class TransformersChatModel:
    """A causal LM run by transformers; one streamer and one stop flag per call."""

    def __init__(self, settings: LLMSettings, cache_dir: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = settings.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype_name = settings.dtype if settings.dtype != "auto" else ("bfloat16" if device == "cuda" else "float32")
        if device == "cpu" and dtype_name != "float32":
            raise ConfigError(f"llm.dtype: {dtype_name} on the CPU is not allowed (prefill is 6x slower); use float32 or auto")
        self._device = device
        self._settings = settings
        source, kwargs = _transformers_source(settings.model, cache_dir)
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            self._model = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, dtype_name), **kwargs)
        except (OSError, ValueError) as e:
            raise ModelLoadError(
                f"transformers could not load '{settings.model}': {e}. Offline, a hub id must already be in "
                f"the Hugging Face cache; or use llm.backend: llamacpp with a packaged model"
            ) from e
        self._model.to(device).eval()
        self.name = f"transformers/{settings.model}"
        end_of_turn = self._tokenizer.convert_tokens_to_ids("<|im_end|>")
        eos = {self._tokenizer.eos_token_id, end_of_turn if isinstance(end_of_turn, int) else None}
        self._eos = sorted(t for t in eos if isinstance(t, int) and t >= 0)
        self.engine = None
        if settings.batching == "on" or (settings.batching == "auto" and device == "cuda"):
            from chatbot.engine import BatchedEngine

            self.engine = BatchedEngine(
                self._model,
                eos_token_ids=self._eos,
                pad_token_id=self._tokenizer.pad_token_id or self._eos[0],
                max_new_tokens=settings.max_new_tokens,
                max_requests=settings.max_requests,
                temperature=settings.temperature,
                kv_cache_blocks=settings.kv_cache_blocks,
                max_batch_tokens=settings.max_batch_tokens,
                cuda_graphs=True if settings.cuda_graphs and device == "cuda" else None,
            )

    def stream(self, messages: list[Message], max_new_tokens: int | None = None, starts: tuple[str, ...] = ()) -> Iterator[str]:
        if self.engine is not None:
            ids = self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
            yield from self._detokenize(self.engine.generate(list(ids), max_new_tokens or self._settings.max_new_tokens))
            return
        yield from self._stream_solo(messages, max_new_tokens, starts)

    def _detokenize(self, token_ids: Iterator[int]) -> Iterator[str]:
        """Text pieces for a stream of token ids, holding back an incomplete UTF-8 character."""
        ids: list[int] = []
        emitted = 0
        for token in token_ids:
            if token in self._eos:
                break
            ids.append(token)
            text = self._tokenizer.decode(ids, skip_special_tokens=True)
            if text.endswith("\ufffd"):
                continue
            if len(text) > emitted:
                yield text[emitted:]
                emitted = len(text)

    def _stream_solo(self, messages: list[Message], max_new_tokens: int | None, starts: tuple[str, ...] = ()) -> Iterator[str]:
        """One `generate` call per request, in its own thread, with its own streamer and stop flag;
        with `starts`, the reply is held to open with one of them (`OpeningTokens`)."""
        from transformers import (
            LogitsProcessorList,
            StoppingCriteria,
            StoppingCriteriaList,
            TextIteratorStreamer,
        )

        inputs = self._tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        ).to(self._device)
        streamer = TextIteratorStreamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True)
        cancelled = threading.Event()

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs) -> bool:
                return cancelled.is_set()

        sampling = self._settings.temperature > 0
        kwargs = dict(
            **inputs,
            streamer=streamer,
            max_new_tokens=max_new_tokens or self._settings.max_new_tokens,
            do_sample=sampling,
            temperature=self._settings.temperature if sampling else None,
            top_p=None,
            top_k=None,
            eos_token_id=self._eos,
            pad_token_id=self._tokenizer.pad_token_id or self._eos[0],
            stopping_criteria=StoppingCriteriaList([_Cancelled()]),
        )
        if starts:  # the tokens of each opening, without its trailing space (the next word brings its own)
            openings = [self._tokenizer.encode(start.rstrip(), add_special_tokens=False) for start in starts]
            kwargs["logits_processor"] = LogitsProcessorList([OpeningTokens(inputs["input_ids"].shape[1], openings)])
        thread = threading.Thread(target=self._model.generate, kwargs=kwargs, daemon=True)
        thread.start()
        try:
            for text in streamer:
                if text:
                    yield text
        finally:
            cancelled.set()
            thread.join()

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False))


def _transformers_source(model: str, cache_dir: Path) -> tuple[str, dict]:
    """Where transformers loads `model` from: a folder, a hub id, or a GGUF (folder + file name)."""
    if model.startswith("packaged:") or model.endswith(".gguf"):
        from chatbot.weights import resolve_gguf

        path = resolve_gguf(model, cache_dir)
        return str(path.parent), {"gguf_file": path.name}
    return model, {}


class FakeChatModel:
    """Deterministic stand-in: replies with the first line of the first passage it was given, or a
    fixed `reply`; counts whitespace-separated words and CJK characters as tokens."""

    name = "fake"

    def __init__(self, reply: str | None = None) -> None:
        self.reply = reply
        self.calls: list[list[Message]] = []
        self.starts: list[tuple[str, ...]] = []  # each call's `starts`

    def stream(self, messages: list[Message], max_new_tokens: int | None = None, starts: tuple[str, ...] = ()) -> Iterator[str]:
        self.calls.append(messages)
        self.starts.append(starts)
        text = self.reply if self.reply is not None else _first_passage_line(messages[-1]["content"])
        words = text.split(" ")
        for i, word in enumerate(words[: max_new_tokens or len(words)]):
            yield word if i == 0 else " " + word

    def count_tokens(self, text: str) -> int:
        return sum(len(word) if not word.isascii() else 1 for word in text.split())


class OpeningTokens:
    """A transformers logits processor, the equivalent of `_opening_grammar` for one sequence: until
    the reply has opened with one of `openings` (token ids), only a token that continues one of them
    may come next; after that, any token."""

    def __init__(self, prompt_length: int, openings: list[list[int]]) -> None:
        self.prompt_length = prompt_length
        self.openings = [o for o in openings if o]

    def __call__(self, input_ids, scores):
        import torch

        held = scores
        for row in range(input_ids.shape[0]):  # each sequence by itself (beams, several replies)
            generated = input_ids[row, self.prompt_length :].tolist()
            if any(generated[: len(o)] == o for o in self.openings):
                continue
            step = len(generated)
            allowed = sorted({o[step] for o in self.openings if len(o) > step and o[:step] == generated})
            if allowed:
                if held is scores:
                    held = scores.clone()
                kept = held[row, allowed].clone()
                held[row] = float("-inf")
                held[row, allowed] = kept
        return held


MIN_AFTER_VERDICT = 8  # characters a verdict must be followed by: "Yes," alone says nothing (`checks.py`'s content check)


def opening_gbnf(starts: tuple[str, ...]) -> str:
    """A llama.cpp grammar (GBNF) for a one-line reply that opens with one of `starts`: a verdict
    that goes on ("Yes, ") followed by at least `MIN_AFTER_VERDICT` characters, or one that is the
    whole reply ("Not stated.")."""

    def options(chosen: list[str]) -> str:
        return " | ".join(json.dumps(s, ensure_ascii=False) for s in chosen)

    going_on = [s for s in starts if not s.endswith((".", "。"))]
    whole = [s for s in starts if s.endswith((".", "。"))]
    rules = [f"({options(going_on)}) [^\\n]{{{MIN_AFTER_VERDICT},}}"] if going_on else []
    rules += [f"({options(whole)})"] if whole else []
    return f"root ::= {' | '.join(rules)}"


@functools.lru_cache(maxsize=16)
def _opening_grammar(starts: tuple[str, ...]):
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_string(opening_gbnf(starts), verbose=False)


def _first_passage_line(prompt: str) -> str:
    for line in prompt.splitlines():
        if line.startswith("[1]"):
            return "Fake answer: " + line.removeprefix("[1]").strip()
    return "Fake answer."


def make_chat_model(settings: LLMSettings, cache_dir: Path) -> ChatModel:
    """The chat model the settings name."""
    if settings.backend == "fake":
        return FakeChatModel()
    if settings.backend == "transformers":
        return TransformersChatModel(settings, cache_dir)
    if settings.backend == "openai":
        from chatbot.openai_backend import OpenAIChatModel

        return OpenAIChatModel(settings)
    from chatbot.weights import resolve_gguf

    return LlamaCppChatModel(resolve_gguf(settings.model, cache_dir), settings)
