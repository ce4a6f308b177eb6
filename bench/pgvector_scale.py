"""Dense search at 100k chunks: exact search in memory (FAISS `IndexFlatIP`, what every replica runs)
against pgvector's HNSW index inside PostgreSQL (a server of its own from the pgserver wheel, as the
tests start it). Prints build time, size, query p50/p95 and recall@10 against exact search.

    .venv/bin/python bench/pgvector_scale.py [--chunks 100000] [--queries 300] [--ef 40 --ef 100]

The vectors: the development set's 10,882 passages embedded by the default embedders, then copies
of them with a little noise until `--chunks` (embedding 100k passages on 2 cores would take hours);
the queries: the development set's first questions, embedded as the chat embeds them. Not a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from chatbot.config import load_settings  # noqa: E402
from chatbot.embeddings import embed_queries  # noqa: E402
from chatbot.evaluation import load_knowledge, load_queries, prepare_index  # noqa: E402
from chatbot.index_store import libpq_url  # noqa: E402
from labelled_set import DSTC11  # noqa: E402
from tests.postgres import postgres_server  # noqa: E402


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--ef", type=int, action="append", help="hnsw.ef_search values (default 40 and 100)")
    args = parser.parse_args()
    import faiss
    import psycopg
    from pgvector.psycopg import register_vector

    settings = load_settings()
    index, embedder = prepare_index(settings, load_knowledge(DSTC11 / "knowledge.jsonl"), progress=False)
    base = index.vectors
    rng = np.random.default_rng(0)
    copies = [base]
    while sum(len(c) for c in copies) < args.chunks:
        copies.append(base + rng.normal(0, 0.01, base.shape).astype(np.float32))
    vectors = np.ascontiguousarray(np.concatenate(copies)[: args.chunks], dtype=np.float32)
    questions = [q.question for q in load_queries([DSTC11 / "queries.jsonl"], args.queries)]
    queries = np.asarray(embed_queries(embedder, questions), dtype=np.float32)
    print(f"{len(vectors)} vectors of {vectors.shape[1]} dimensions, {len(queries)} queries")

    started = time.perf_counter()
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    print(f"FAISS flat (exact): built in {time.perf_counter() - started:.2f} s, {vectors.nbytes / 2**20:.0f} MiB")
    times, exact = [], []
    for q in queries:
        started = time.perf_counter()
        _, rows = flat.search(q[None, :], 10)
        times.append((time.perf_counter() - started) * 1000)
        exact.append(set(rows[0].tolist()))
    print(f"  query p50 {_p(times, 50):.2f} ms, p95 {_p(times, 95):.2f} ms, recall@10 1.000")

    with postgres_server(pgvector=True) as url:
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            register_vector(conn)
            conn.execute(f"CREATE TABLE chunks (id integer PRIMARY KEY, embedding vector({vectors.shape[1]}))")
            started = time.perf_counter()
            with conn.cursor().copy("COPY chunks (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["int4", "vector"])
                for row, vector in enumerate(vectors):
                    copy.write_row((row, vector))
            print(f"pgvector: rows written in {time.perf_counter() - started:.1f} s")
            conn.execute("SET maintenance_work_mem = '2GB'")
            started = time.perf_counter()
            conn.execute("CREATE INDEX ON chunks USING hnsw (embedding vector_ip_ops)")
            built = time.perf_counter() - started
            table, total = conn.execute("SELECT pg_relation_size('chunks'), pg_total_relation_size('chunks')").fetchone()
            print(f"  HNSW (m 16, ef_construction 64) built in {built:.1f} s; table {table / 2**20:.0f} MiB, with the index {total / 2**20:.0f} MiB")
            for ef in args.ef or [40, 100]:
                conn.execute(f"SET hnsw.ef_search = {ef}")
                times, recalls = [], []
                for q, truth in zip(queries, exact):
                    started = time.perf_counter()
                    rows = conn.execute("SELECT id FROM chunks ORDER BY embedding <#> %s LIMIT 10", (q,)).fetchall()
                    times.append((time.perf_counter() - started) * 1000)
                    recalls.append(len(truth & {r[0] for r in rows}) / 10)
                print(f"  ef_search {ef}: query p50 {_p(times, 50):.2f} ms, p95 {_p(times, 95):.2f} ms (a round trip included), "
                      f"recall@10 {statistics.mean(recalls):.3f}")


if __name__ == "__main__":
    main()
