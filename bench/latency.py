"""Latency and memory of the answer path on the default profile, as a customer sees it.

    .venv/bin/python bench/latency.py [--profile default] [--repeats 2]

Prints load times, retrieval, a curated FAQ answer, a generated answer's first token and whole
answer (p50 / max over a fixed set of English and Chinese questions, warm), and the process's
resident memory. Not a test: run it on a quiet machine and name the machine with the figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot.config import load_settings

FAQ = [  # curated answers: an exact FAQ match, or FAQ question and top passage agreeing
    "How long does standard delivery take?",
    "I opened the box, can I still send it back?",
    "如何退货？",
    "拆开包装以后还能退吗？",
]
GENERATE = [
    ("What happens if my parcel is lost in transit?", []),
    ("How long is the warranty on a toaster?", []),
    ("Can I return a rug I bought on sale?", []),
    ("快递几天能到？", []),
    ("咖啡机保修几年？", []),
    ("How long does it take to arrive?", [{"role": "user", "content": "How much is express delivery?"}, {"role": "assistant", "content": "Express delivery costs USD 14.95."}]),
]


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="default")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(args.profile, overrides={"data_dir": tmp})
        run(settings, args.repeats)


def run(settings, repeats: int) -> None:
    from chatbot.embeddings import make_embeddings
    from chatbot.index import KnowledgeIndex
    from chatbot.kb import KnowledgeBase
    from chatbot.llm import make_chat_model
    from chatbot.runtime import build_dialogue_manager

    t = time.perf_counter()
    embedder = make_embeddings(settings.embeddings, settings.model_cache_dir)
    print(f"load embedder ({settings.embeddings.backend}): {1000 * (time.perf_counter() - t):.0f} ms")
    t = time.perf_counter()
    index = KnowledgeBase(settings, embedder).open()
    print(f"build index from knowledge/: {time.perf_counter() - t:.1f} s for {len(index.chunks)} chunks")
    t = time.perf_counter()
    KnowledgeIndex.load(settings.index_dir)
    print(f"load index: {1000 * (time.perf_counter() - t):.0f} ms")
    t = time.perf_counter()
    model = make_chat_model(settings.llm, settings.model_cache_dir)
    print(f"load LM ({model.name}, {settings.llm.parallel} contexts): {time.perf_counter() - t:.1f} s")
    manager = build_dialogue_manager(settings, model=model)

    retrieve = [manager.retriever.retrieve(q).elapsed_ms for q in FAQ + [g[0] for g in GENERATE] for _ in range(repeats)]
    faq = []
    for q in FAQ * repeats:
        reply = manager.respond(q).finish()
        assert reply.mode == "faq", (q, reply.mode)
        faq.append(reply.timings["total_ms"])
    for question, history in GENERATE:  # warm-up: the system prompt prefix is cached per context
        manager.respond(question, history).finish()
    first, total, tokens = [], [], []
    for _ in range(repeats):
        for question, history in GENERATE:
            reply = manager.respond(question, history)
            assert reply.mode == "generate", (question, reply.mode)
            reply.finish()
            first.append(reply.timings["first_token_ms"])
            total.append(reply.timings["total_ms"])
            tokens.append(model.count_tokens(reply.text))

    def show(name: str, values: list[float]) -> None:
        print(f"{name:38} p50 {statistics.median(values):7.0f} ms   max {max(values):7.0f} ms   (n={len(values)})")

    print()
    show("retrieval (embed + search)", retrieve)
    show("curated FAQ answer, whole", faq)
    show("generated answer, first token", first)
    show("generated answer, whole", total)
    print(f"generated answer length: p50 {statistics.median(tokens):.0f} tokens")
    print(f"memory: RSS now {rss_mb():.0f} MB, peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
