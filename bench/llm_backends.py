"""Which backend runs the packaged GGUF faster at the same answers: llama.cpp or transformers
(float32 on the CPU; transformers de-quantises the GGUF when it loads it).

    .venv/bin/python bench/llm_backends.py [--model packaged:qwen2.5-coder-0.5b] [--max-new-tokens 64]

Both get the same grounded prompts, built by the dialogue manager from real retrieval over
`knowledge/`, decoded greedily. Prints load time, time to first token, decode speed and whether the
two answers are the same text, one line per prompt, then the medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot.config import load_settings

QUESTIONS = [
    "I opened the box, can I still send it back?",
    "How long is the warranty on a toaster?",
    "Can I split the payment into several parts?",
    "Do you keep my credit card number?",
    "咖啡机保修几年？",
    "拆开包装以后还能退吗？",
]


def timed_stream(model, messages):
    started = time.perf_counter()
    first, text = None, ""
    for piece in model.stream(messages):
        first = first or time.perf_counter() - started
        text += piece
    total = time.perf_counter() - started
    tokens = model.count_tokens(text)
    decode = (tokens - 1) / (total - first) if first is not None and tokens > 1 and total > first else float("nan")
    return text.strip(), first or total, total, decode


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="packaged:qwen2.5-coder-0.5b")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    from chatbot.llm import make_chat_model
    from chatbot.runtime import build_dialogue_manager

    with tempfile.TemporaryDirectory() as tmp:
        base = {"data_dir": tmp, "llm.model": args.model, "llm.max_new_tokens": args.max_new_tokens, "llm.parallel": 1}
        settings = load_settings("default", overrides=base)
        manager = build_dialogue_manager(settings, model=make_chat_model(settings.llm, settings.model_cache_dir))
        prompts = []
        for q in QUESTIONS:
            r = manager.retriever.retrieve(q)
            passages = [h.chunk.page_content[: settings.retrieval.passage_chars] for h in r.passages[: settings.retrieval.passages_in_prompt]]
            prompts.append(manager.build_messages(q, passages, [], r.lang))
        results = {}
        for backend in ("llamacpp", "transformers"):
            s = load_settings("default", overrides=base | {"llm.backend": backend})
            started = time.perf_counter()
            model = make_chat_model(s.llm, s.model_cache_dir)
            load = time.perf_counter() - started
            timed_stream(model, prompts[0])  # warm-up
            results[backend] = (load, [timed_stream(model, p) for p in prompts])
            del model
    print(f"{'backend':13} {'load s':>7} {'TTFT s':>7} {'decode tok/s':>12} {'total s':>8}")
    for backend, (load, rows) in results.items():
        ttft = statistics.median(r[1] for r in rows)
        decode = statistics.median(r[3] for r in rows)
        total = statistics.median(r[2] for r in rows)
        print(f"{backend:13} {load:7.1f} {ttft:7.2f} {decode:12.1f} {total:8.2f}")
    same = 0
    for q, a, b in zip(QUESTIONS, results["llamacpp"][1], results["transformers"][1]):
        same += a[0] == b[0]
        print(f"\n{q}\n  llamacpp:     {a[0]!r}\n  transformers: {b[0]!r}")
    print(f"\nidentical answers: {same}/{len(QUESTIONS)}")


if __name__ == "__main__":
    main()
