"""How the llama.cpp contexts are handed out, measured on the same grounded prompts in the same
order: in turn (the one free the longest, as before); by prompt affinity (`ContextPool`: the free
context whose last prompt shares the most with the new one); and by affinity with the kept copy of
each system text's cache restored into a context that lacks it (`SavedOpenings`, shipped).

    .venv/bin/python bench/llm_pool.py [--prompts 60] [--workers 2] [--rounds 1]

The prompts are the dialogue manager's own (real retrieval and evidence over `knowledge/`) for the
answer set's questions that it answers with the LM, English and Chinese mixed in a fixed shuffled
order, each question once (no prompt repeats whole). `--workers` threads send them through one
model (`llm.parallel` contexts) as fast as the contexts free up. Prints, per policy, the wall time,
answers per minute, and the time to the LM's first token (p50 / p95: the prompt's prefill, plus the
wait for a context). `--rounds` alternates the policies that many times.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot.config import load_settings
from chatbot.evaluation import read_jsonl
from chatbot.llm import ContextPool, FakeChatModel, SavedOpenings

HERE = Path(__file__).resolve().parent


class InTurn(ContextPool):
    """The policy before `ContextPool`: whichever context has been free the longest."""

    def acquire(self, prompt, timeout):
        with self._ready:
            if not self._ready.wait_for(lambda: self._free, timeout=timeout):
                return None
            context = self._free.pop(0)
            last, self._last[id(context)] = self._last.get(id(context), []), prompt
            return context, last


class NoneKept(SavedOpenings):
    """No copies kept: a context reads a system text it lacks anew."""

    def keep(self, llm, system):
        pass


def grounded_prompts(manager, limit: int) -> list[list[dict]]:
    """The messages the manager sends the LM for the answer set's generated turns, in a fixed
    shuffled order (seed 0): a `FakeChatModel` stands in and records them (counting tokens as the
    real model does, so that histories are trimmed alike)."""
    model, capture = manager.model, FakeChatModel("Not stated.")
    capture.count_tokens = model.count_tokens
    manager.model = capture
    try:
        items = read_jsonl(HERE / "answers.jsonl")
        random.Random(0).shuffle(items)
        for item in items:
            manager.respond(item["question"], item.get("history") or []).finish()
            if len(capture.calls) >= limit:
                break
    finally:
        manager.model = model
    return capture.calls


def run(model, prompts: list[list[dict]], workers: int) -> dict:
    todo = list(enumerate(prompts))
    lock = threading.Lock()
    firsts: list[float] = []

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                _, messages = todo.pop(0)
            started = time.perf_counter()
            first = None
            for _ in model.stream(messages):
                first = first if first is not None else time.perf_counter() - started
            with lock:
                firsts.append(first if first is not None else time.perf_counter() - started)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    firsts.sort()
    return {"wall_s": wall, "per_min": len(prompts) / wall * 60, "first_p50": statistics.median(firsts), "first_p95": firsts[int(0.95 * (len(firsts) - 1))]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()

    from chatbot.runtime import build_dialogue_manager

    settings = load_settings()
    manager = build_dialogue_manager(settings)
    model = manager.model
    if not hasattr(model, "_pool"):
        raise SystemExit(f"{model.name}: not a llama.cpp model; this bench measures its context pool")
    prompts = grounded_prompts(manager, args.prompts)
    langs = sum(1 for p in prompts if any("\u4e00" <= ch <= "\u9fff" for ch in p[0]["content"]))
    contexts = list(model._pool._free)
    print(f"{model.name}, {len(contexts)} contexts, {args.workers} workers; {len(prompts)} prompts ({langs} Chinese), "
          f"{statistics.median(model.count_tokens(' '.join(m['content'] for m in p)) for p in prompts):.0f} tokens p50")
    for round_ in range(args.rounds):
        for name, policy, kept in (("in turn (before)", InTurn, NoneKept), ("by affinity", ContextPool, NoneKept),
                                   ("affinity + kept (shipped)", ContextPool, SavedOpenings)):
            for context in contexts:
                context.reset()  # no policy starts with the other's caches
            model._pool, model._openings = policy(contexts), kept()
            r = run(model, prompts, args.workers)
            print(f"round {round_ + 1}, {name:25}: {r['wall_s']:6.1f} s, {r['per_min']:5.1f} answers/min, "
                  f"LM first token p50 {r['first_p50'] * 1000:5.0f} ms, p95 {r['first_p95'] * 1000:5.0f} ms", flush=True)


if __name__ == "__main__":
    main()
