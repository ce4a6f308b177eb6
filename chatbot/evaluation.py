"""`chatbot eval`: retrieval and abstain quality on a labelled set (format: ../shared/eval/README.md).

A temporary index is built from the set's knowledge with the configured embedder (the live
knowledge base is not touched; passage embeddings are cached under `<data_dir>/cache/` by content),
and every query goes through the same retrieval and decision code as the chat. Reported: hit@1,
hit@5, hit@10 and MRR@10 for all queries, first turns and follow-ups; abstain precision and recall
when out-of-scope queries (empty `gold_ids`) are given; p50/p95 query latency.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from langchain_core.documents import Document

from chatbot.config import Settings
from chatbot.errors import UserError
from chatbot.language import detect_language

KS = (1, 5, 10)


@dataclass(frozen=True)
class Query:
    id: str
    question: str
    history: list[dict]
    gold_ids: frozenset[str]
    lang: str
    reference: str = ""  # the reply a person gave to this turn, where the set has it

    @property
    def in_scope(self) -> bool:
        return bool(self.gold_ids)


def read_jsonl(path: Path) -> list[dict]:
    """The objects of a JSONL file; a bad line is an error naming the file and line."""
    rows = []
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror})") from e
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise UserError(f"{path}:{number}: not JSON ({e})") from e
        if not isinstance(row, dict):
            raise UserError(f"{path}:{number}: each line must be a JSON object")
        rows.append(row)
    return rows


def load_knowledge(path: Path) -> list[Document]:
    """Passages `{id, title, text}` as index chunks."""
    docs = []
    for n, row in enumerate(read_jsonl(path)):
        if not row.get("id") or not isinstance(row.get("text"), str):
            raise UserError(f"{path}: passage {n + 1} needs an 'id' and a 'text'")
        title = str(row.get("title") or "")
        text = row["text"]
        docs.append(Document(  # the title travels with the text, as headings do in chunked documents
            id=str(row["id"]), page_content=f"{title}\n{text}" if title else text,
            metadata={"id": str(row["id"]), "title": title, "heading": title, "source": path.name, "position": n,
                      "kind": "section", "lang": row.get("lang") or detect_language(text)},
        ))
    return docs


def load_queries(paths: Iterable[Path], limit: int | None = None) -> list[Query]:
    """Queries of every file, pooled; `limit` keeps the first N of each file."""
    queries = []
    for path in paths:
        rows = read_jsonl(path)[:limit] if limit else read_jsonl(path)
        for n, row in enumerate(rows):
            if not isinstance(row.get("question"), str):
                raise UserError(f"{path}: query {n + 1} needs a 'question'")
            question = row["question"]
            queries.append(Query(
                str(row.get("id", f"{path.stem}:{n}")), question, list(row.get("history") or []),
                frozenset(map(str, row.get("gold_ids") or [])), row.get("lang") or detect_language(question),
                str(row.get("reference") or ""),
            ))
    return queries


def rank_metrics(ranks: list[int | None]) -> dict:
    """hit@k and MRR@10 from the 1-based rank of the first gold passage of each query (None: not found)."""
    n = len(ranks)
    result: dict = {"n": n}
    for k in KS:
        result[f"hit@{k}"] = round(sum(1 for r in ranks if r is not None and r <= k) / n, 4)
    result["mrr@10"] = round(sum(1.0 / r for r in ranks if r is not None and r <= 10) / n, 4)
    return result


def abstain_metrics(in_scope_abstained: list[bool], out_of_scope_abstained: list[bool]) -> dict:
    """precision: share of abstentions that were out of scope; recall: share of out-of-scope queries
    abstained on; in_scope_answered: share of in-scope queries not abstained on."""
    right = sum(out_of_scope_abstained)
    total = right + sum(in_scope_abstained)
    return {
        "precision": round(right / total, 4) if total else 0.0,
        "recall": round(right / len(out_of_scope_abstained), 4),
        "in_scope_answered": round(1 - sum(in_scope_abstained) / len(in_scope_abstained), 4) if in_scope_abstained else 0.0,
    }


def first_gold_rank(retrieved_ids: list[str], gold: frozenset[str]) -> int | None:
    return next((i + 1 for i, chunk_id in enumerate(retrieved_ids) if chunk_id in gold), None)


def run_eval(settings: Settings, knowledge: Path, query_files: list[Path], limit: int | None = None, progress: bool = True) -> dict:
    """The report `chatbot eval --json` prints."""
    queries = load_queries(query_files, limit)
    if not queries:
        raise UserError("no queries to evaluate")
    index, embedder = prepare_index(settings, load_knowledge(knowledge), progress)
    return evaluate_index(settings, index, embedder, queries, progress)


def prepare_index(settings: Settings, chunks: list[Document], progress: bool = True):
    """A temporary index of `chunks` with the configured embedder, and the embedder."""
    from chatbot.calibration import OFF_TOPIC_FILE, calibrate
    from chatbot.embeddings import embedder_name, make_embeddings
    from chatbot.index import KnowledgeIndex, answer_text, embed_answers

    embedder = make_embeddings(settings.embeddings, settings.model_cache_dir)
    name = embedder_name(embedder)
    vectors = _cached_passage_vectors(settings, embedder, name, [c.page_content for c in chunks], progress)
    paired = sum(answer_text(c) is not None for c in chunks)
    if 0 < paired < len(chunks):
        answers = embed_answers(chunks, lambda texts: _cached_passage_vectors(settings, embedder, name, texts, progress, "answers"), vectors.shape[1])
    else:  # answers are read only where pairs and statements mix (`Retriever._cosines`): none to embed
        answers = np.zeros_like(vectors)
    index = KnowledgeIndex.build(chunks, embedder, vectors=vectors, answer_vectors=answers)
    index.manifest["calibration"] = calibrate(index, embedder, settings.prompts_dir / OFF_TOPIC_FILE, settings.data_dir / "cache" / "embeddings")
    return index, embedder


def evaluate_index(settings: Settings, index, embedder, queries: list[Query], progress: bool = True) -> dict:
    """Run `queries` through the chat's retrieval and decision code over `index`; the report."""
    from tqdm import tqdm

    from chatbot.calibration import resolve
    from chatbot.dialogue import abstain_reason, decide
    from chatbot.retrieval import Retriever
    from chatbot.runtime import turn_forms

    retriever = Retriever(index, embedder, settings.retrieval, turn_forms(settings, embedder))
    thresholds = resolve(settings.retrieval, index.manifest.get("calibration"))
    ranks: dict[str, list[int | None]] = {"all": [], "first_turns": [], "follow_ups": []}
    abstained: dict[bool, list[bool]] = {True: [], False: []}
    reasons: dict[str, dict[str, int]] = {"in_scope": {}, "out_of_scope": {}}
    latencies = []
    for query in tqdm(queries, desc="queries", disable=not progress, file=sys.stderr):
        retrieval = retriever.retrieve(query.question, query.history, k=max(KS), enough=thresholds.answer)
        latencies.append(retrieval.elapsed_ms)
        mode = decide(retrieval, thresholds)
        abstained[query.in_scope].append(mode == "abstain")
        if mode == "abstain":
            reason = abstain_reason(retrieval, thresholds) or "none"
            counts = reasons["in_scope" if query.in_scope else "out_of_scope"]
            counts[reason] = counts.get(reason, 0) + 1
        if query.in_scope:
            rank = first_gold_rank([h.chunk.metadata["id"] for h in retrieval.passages], query.gold_ids)
            ranks["all"].append(rank)
            ranks["follow_ups" if query.history else "first_turns"].append(rank)
    report = {part: rank_metrics(r) for part, r in ranks.items() if r}
    if abstained[False]:
        report["abstain"] = abstain_metrics(abstained[True], abstained[False])
    report["abstain_reasons"] = reasons
    report["thresholds"] = {"answer": thresholds.answer, "request": thresholds.request, "faq": thresholds.faq,
                            "calibrated": sorted(set((index.manifest.get("calibration") or {}).get("answer_threshold", {})) - set(settings.retrieval.answer_threshold))}
    if index.manifest.get("calibration"):
        report["calibration"] = index.manifest["calibration"]
    report["latency_ms"] = {"p50": round(statistics.median(latencies), 2), "p95": round(float(np.percentile(latencies, 95)), 2)}
    return report


def _cached_passage_vectors(settings: Settings, embedder, name: str, texts: list[str], progress: bool, what: str = "passages") -> np.ndarray:
    """`texts` embedded as passages, cached by content under `<data_dir>/cache/embeddings/`."""
    from tqdm import tqdm

    from chatbot.embeddings import cached_vectors

    def embed(texts: list[str]) -> list[list[float]]:
        batch, rows = 256, []
        for i in tqdm(range(0, len(texts), batch), desc=f"embedding {what}", disable=not progress, file=sys.stderr):
            rows.extend(embedder.embed_documents(texts[i : i + batch]))
        return rows

    return cached_vectors(settings.data_dir / "cache" / "embeddings", name, texts, embed, prefix="" if what == "passages" else f"{what}-")


def format_report(report: dict) -> str:
    """The report as a small text table."""
    lines = [f"{'part':12} {'n':>6} {'hit@1':>7} {'hit@5':>7} {'hit@10':>7} {'mrr@10':>7}"]
    for part in ("all", "first_turns", "follow_ups"):
        if part in report:
            r = report[part]
            lines.append(f"{part:12} {r['n']:>6} {r['hit@1']:>7.3f} {r['hit@5']:>7.3f} {r['hit@10']:>7.3f} {r['mrr@10']:>7.3f}")
    if "abstain" in report:
        a = report["abstain"]
        lines.append(f"abstain: precision {a['precision']:.3f}, recall {a['recall']:.3f}, in-scope answered {a['in_scope_answered']:.3f}")
    for side, counts in report.get("abstain_reasons", {}).items():
        if counts:
            lines.append(f"abstained on {side.replace('_', '-')} turns because: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    lines += calibration_lines(report.get("calibration"))
    lines.append(f"latency: p50 {report['latency_ms']['p50']:.1f} ms, p95 {report['latency_ms']['p95']:.1f} ms")
    return "\n".join(lines)


def calibration_lines(calibration: dict | None) -> list[str]:
    """An index version's calibration as lines of text: per language its threshold and the probe
    shares it reaches, whether the titles are names (subject tracking), then its warnings."""
    if not calibration:
        return ["calibration: none (the thresholds come from the settings)"]
    lines = []
    for lang, c in calibration.get("languages", {}).items():
        answered = "no passages in this language" if c["in_scope_answered"] is None else f"{c['in_scope_answered']:.3f} of its own {c['in_scope_probes']} questions answered"
        own = f"; domains left out as this knowledge's own: {', '.join(c['own_domains'])}" if c["own_domains"] else ""
        lines.append(f"calibration {lang}: threshold {c['threshold']:.4f}; {answered}, {c['off_topic_abstained']:.3f} of {c['off_topic_probes']} off-topic questions refused{own}")
    tracking = calibration.get("subject_tracking")
    if tracking:
        evidence = (
            "no passage names a title" if tracking["own_title_share"] is None
            else f"{tracking['own_title_share']:.3f} of the {tracking['passages_naming_a_title']} passages that name a title name their own"
        )
        verdict = "on, unless retrieval.subject_tracking is false" if tracking["on"] else "off, the titles are not names"
        lines.append(f"subject tracking: {verdict} ({evidence})")
    lines += [f"calibration warning: {w}" for w in calibration.get("warnings", [])]
    return lines


_F1_LATIN = re.compile(r"[a-z0-9]+")
_F1_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")


def f1_tokens(text: str) -> list[str]:
    """The tokens of token F1: English words lower-cased, each Chinese character on its own."""
    text = text.lower()
    return _F1_LATIN.findall(text) + _F1_HAN.findall(text)


def token_f1(answer: str, reference: str) -> float:
    """Token F1 of `answer` against `reference` (bags of `f1_tokens`, as in SQuAD)."""
    a, r = Counter(f1_tokens(answer)), Counter(f1_tokens(reference))
    common = sum((a & r).values())
    if not common:
        return 0.0
    precision, recall = common / sum(a.values()), common / sum(r.values())
    return 2 * precision * recall / (precision + recall)


def content_recall(answer: str, grounding: str) -> float:
    """The share of `grounding`'s content words (BM25's tokens: stemmed, stop words dropped) that
    `answer` has; 1.0 for a grounding with none."""
    from chatbot.lexical import tokenize

    wanted = set(tokenize(grounding))
    return len(wanted & set(tokenize(answer))) / len(wanted) if wanted else 1.0


def score_answer(item: dict, mode: str, text: str) -> dict:
    """One labelled answer item against a reply: abstained when it should, every `must` fact group
    present (any alternative, case-insensitive), no `must_not` claim."""
    lowered = text.lower()
    if item["expect"] == "abstain":
        return {"correct": mode == "abstain", "missing": [], "forbidden": []}
    missing = [group for group in item.get("must", []) if not any(alt.lower() in lowered for alt in group)]
    forbidden = [claim for claim in item.get("must_not", []) if claim.lower() in lowered]
    return {"correct": mode != "abstain" and not missing and not forbidden, "missing": missing, "forbidden": forbidden}


def run_answer_eval(settings: Settings, answers: Path, limit: int | None = None, progress: bool = True) -> dict:
    """Generated answers on the live knowledge base scored against a labelled answer set
    (`bench/answers.jsonl` format): accuracy, the right source given, time to first token, tokens/s."""
    from tqdm import tqdm

    from chatbot.runtime import build_dialogue_manager

    items = read_jsonl(answers)[:limit] if limit else read_jsonl(answers)
    manager = build_dialogue_manager(settings)
    rows = []
    for item in tqdm(items, desc="answers", disable=not progress, file=sys.stderr):
        reply = manager.respond(item["question"], item.get("history") or []).finish()
        score = score_answer(item, reply.mode, reply.text)
        tokens = manager.model.count_tokens(reply.text)
        generate_s = (reply.timings["total_ms"] - reply.timings.get("first_token_ms", 0)) / 1000
        rows.append({
            "id": item.get("id"), "lang": item.get("lang") or detect_language(item["question"]), "expect": item["expect"],
            "mode": reply.mode, "correct": score["correct"], "missing": score["missing"], "forbidden": score["forbidden"],
            "source_given": any(s.heading in item.get("gold_headings", []) for s in reply.sources),
            "first_token_ms": reply.timings.get("first_token_ms"), "tokens_per_s": (tokens - 1) / generate_s if reply.mode == "generate" and tokens > 1 and generate_s > 0 else None,
            "checks": reply.checks, "answer": reply.text,
        })
    return answer_report(rows, manager.model.name)


def answer_report(rows: list[dict], model: str) -> dict:
    def rate(selected: list[dict], key: str = "correct") -> float:
        return round(sum(bool(r[key]) for r in selected) / len(selected), 4) if selected else 0.0

    answerable = [r for r in rows if r["expect"] == "answer"]
    generated = [r for r in rows if r["mode"] == "generate"]
    report = {
        "model": model,
        "n": len(rows),
        "accuracy": rate(rows),
        "by_lang": {lang: rate([r for r in rows if r["lang"] == lang]) for lang in sorted({r["lang"] for r in rows})},
        "answerable_correct": rate(answerable),
        "abstain_correct": rate([r for r in rows if r["expect"] == "abstain"]),
        "source_given": rate(answerable, "source_given"),
        "modes": {m: sum(r["mode"] == m for r in rows) for m in ("faq", "generate", "abstain")},
        "generated_correct": rate([r for r in generated if r["expect"] == "answer"]),
        "forbidden_shown": round(sum(bool(r["forbidden"]) for r in rows) / len(rows), 4) if rows else 0.0,
        "quote_only": round(sum(bool(r.get("checks")) for r in generated) / len(generated), 4) if generated else None,
        "quote_only_reasons": dict(Counter(c for r in generated for c in (r.get("checks") or []))),
    }
    if generated:
        first = [r["first_token_ms"] for r in generated]
        speeds = [r["tokens_per_s"] for r in generated if r["tokens_per_s"]]
        report["first_token_ms"] = {"p50": round(statistics.median(first), 1), "p95": round(float(np.percentile(first, 95)), 1)}
        report["tokens_per_s"] = round(statistics.median(speeds), 1) if speeds else None
    report["wrong"] = [{k: r[k] for k in ("id", "mode", "missing", "forbidden", "answer")} for r in rows if not r["correct"]]
    return report


def run_reference_eval(settings: Settings, knowledge: Path, query_files: list[Path], sample: int = 300, progress: bool = True) -> dict:
    """Answers on a labelled set with references (`reference`: what a person replied), scored
    against them: a fixed sample (seed 0) of `sample` in-scope turns answered over a temporary index
    of `knowledge` with the configured LM. For the turns Kefu answered: token F1 against the
    reference and recall of the gold passages' content words, for Kefu's shown answer and for two
    baselines from the same retrieval (its best sentence; its top passage whole); the share whose
    paraphrase passed the checks, and the quote-only fallbacks by reason."""
    import random

    from tqdm import tqdm

    from chatbot.dialogue import DialogueManager
    from chatbot.evidence import select
    from chatbot.llm import make_chat_model
    from chatbot.prompts import Prompts
    from chatbot.retrieval import Retriever
    from chatbot.runtime import turn_forms

    queries = [q for q in load_queries(query_files) if q.in_scope and q.reference]
    if not queries:
        raise UserError("no in-scope queries with a 'reference' to score answers against")
    queries = random.Random(0).sample(queries, min(sample, len(queries)))
    index, embedder = prepare_index(settings, load_knowledge(knowledge), progress)
    model = make_chat_model(settings.llm, settings.model_cache_dir)
    manager = DialogueManager(settings, Retriever(index, embedder, settings.retrieval, turn_forms(settings, embedder)), model, Prompts(settings.prompts_dir))
    by_id = {c.metadata["id"]: c.page_content for c in index.chunks}
    scores: dict[str, list[tuple[float, float]]] = {"kefu": [], "best_sentence": [], "top_passage": []}
    modes: dict[str, int] = {}
    fallbacks: dict[str, int] = {}
    checked = generated = 0
    first_token = []
    for q in tqdm(queries, desc="answers", disable=not progress, file=sys.stderr):
        reply = manager.respond(q.question, q.history).finish()
        modes[reply.mode] = modes.get(reply.mode, 0) + 1
        if reply.mode == "abstain":
            continue
        if reply.mode == "generate":
            generated += 1
            first_token.append(reply.timings.get("first_token_ms", 0.0))
            checked += reply.checks == []
            for reason in reply.checks or []:
                fallbacks[reason] = fallbacks.get(reason, 0) + 1
        retrieval = manager.retriever.retrieve(q.question, q.history, enough=manager.thresholds().answer)
        given = retrieval.passages[: settings.retrieval.passages_in_prompt]
        evidence = select(embedder, retrieval.vector, given, retrieval.lang, 1) if retrieval.vector is not None else []
        grounding = " ".join(by_id[g] for g in sorted(q.gold_ids) if g in by_id)
        texts = {"kefu": reply.text, "best_sentence": evidence[0].text if evidence else "",
                 "top_passage": retrieval.passages[0].chunk.page_content if retrieval.passages else ""}
        for name, text in texts.items():
            scores[name].append((token_f1(text, q.reference), content_recall(text, grounding)))
    answered = len(scores["kefu"])
    report = {
        "model": model.name, "n": len(queries), "modes": modes, "answered": answered,
        "token_f1": {k: round(statistics.mean(v[0] for v in s), 4) if s else 0.0 for k, s in scores.items()},
        "gold_content_recall": {k: round(statistics.mean(v[1] for v in s), 4) if s else 0.0 for k, s in scores.items()},
        "generated": generated,
        "checks_passed": round(checked / generated, 4) if generated else None,
        "quote_only": round(1 - checked / generated, 4) if generated else None,
        "quote_only_reasons": fallbacks,
    }
    if first_token:
        report["first_token_ms"] = {"p50": round(statistics.median(first_token), 1), "p95": round(float(np.percentile(first_token, 95)), 1)}
    return report
