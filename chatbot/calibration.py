"""The abstain decision calibrated from the knowledge base itself, at every index version.

A business brings its own documents, and where similarity scores sit depends on them: the same
embedder gives a hotel's reviews and a government office's guides different ranges, and a larger
corpus lifts any question's best score. So no fixed cosine can say "nothing here answers this".
Instead, each index version measures its own:

- **In-scope probes** (`in_scope_probes`): questions the knowledge answers. A curated FAQ's question,
  or the question that opens a question-and-answer passage; for a statement (a policy paragraph, a
  review), its first sentence. Each probe is searched with its own passage held out, so it cannot
  find itself: it stands for a customer's question on a subject the knowledge covers.
- **Off-topic probes** (`prompts/off_topic.yaml`): several hundred questions and requests of many
  domains, in English and Chinese. A knowledge base of one of those domains (a bank among the
  banking questions) would count its own subject as off-topic, so a domain whose median probe
  scores nearer the in-scope probes' median than the off-topic probes' is left out (`_own_domains`).
- Every probe is scored as the chat scores a first turn (`best_cosines`, `topic_score`): its best
  cosine over every passage.

The threshold chosen from the probes is in `choose`; the result is stored in the index version's
manifest (`manifest["calibration"]`) with the probe shares it reached, and a warning when the
probes could not be separated. `retrieval.answer_threshold` in the settings overrides a language's
threshold when set. The form check's `retrieval.request_threshold` is not calibrated.

Also stored per language: the off-topic probes' lower quartile (below it a question's own words
are not lifted by its conversation: `turn_topic`) and the in-scope probes' upper quartile (a
request scoring that much is about what this knowledge covers, and answered:
`dialogue.abstain_reason`); and whether subject tracking suits this knowledge
(`retrieval.titles_name_documents`): whether its titles are names that its own passages use.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from chatbot.errors import ConfigError

log = logging.getLogger(__name__)
CALIBRATION_VERSION = 5  # 2: a floor under the lift by the conversation (`floor`); 3: at the lower quartile; 4: subject tracking; 5: `covered`
OFF_TOPIC_FILE = "off_topic.yaml"  # in the prompts folder
PROBES_PER_LANGUAGE = 300  # in-scope probes sampled per language (a fixed seed: the same each time)
SEPARATION_WANTED = 0.9  # below this share of either kind of probe on its right side, a warning
_SENTENCE = re.compile(r"[^.!?。！？\n]+[.!?。！？]?")


@dataclass(frozen=True)
class Probe:
    text: str
    lang: str
    row: int | None = None  # the probe's own passage, held out of its search
    domain: str = ""  # an off-topic probe's domain


def load_off_topic(path: Path) -> list[Probe]:
    """The shipped off-topic probes: `domains: {name: {en: [...], zh: [...]}}`."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        domains = data["domains"]
        probes = [Probe(str(text), lang, None, str(name)) for name, by_lang in domains.items() for lang in ("en", "zh") for text in by_lang.get(lang) or []]
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"{path}: needs 'domains', each with lists of questions under 'en' and 'zh' ({e})") from e
    if not probes:
        raise ConfigError(f"{path}: has no off-topic questions")
    return probes


def probe_question(chunk) -> str | None:
    """What a probe for this passage asks: a FAQ's question, the question that opens a passage, or
    else the passage's first sentence of some length (None for a passage with none)."""
    meta = chunk.metadata
    if meta.get("kind") == "faq" and meta.get("question"):
        return str(meta["question"])
    title = str(meta.get("title") or "")
    body = chunk.page_content.removeprefix(f"{title}\n") if title else chunk.page_content
    for sentence in _SENTENCE.findall(body):
        sentence = sentence.strip()
        if len(sentence) >= (6 if meta.get("lang") == "zh" else 20):
            return sentence[:300]
    return None


def in_scope_probes(chunks, limit: int = PROBES_PER_LANGUAGE, seed: int = 0) -> list[Probe]:
    """Up to `limit` probes per language, one per sampled passage, each holding its passage out."""
    by_lang: dict[str, list[Probe]] = {}
    for row, chunk in enumerate(chunks):
        text = probe_question(chunk)
        if text is not None:
            lang = str(chunk.metadata.get("lang") or "en")
            by_lang.setdefault(lang, []).append(Probe(text, lang, row))
    rng = random.Random(seed)
    return [p for lang in sorted(by_lang) for p in (rng.sample(by_lang[lang], limit) if len(by_lang[lang]) > limit else by_lang[lang])]


@dataclass(frozen=True)
class Thresholds:
    """What the decision compares retrieval's scores with: the calibration of the live index
    version, with any threshold the settings set in its place (`resolve`)."""

    faq: float
    answer: dict[str, float]  # per language, for `turn_topic`; a language without one uses the highest
    request: float | None = None
    # per language: a question whose own words score under this (the off-topic probes' lower quartile) is
    # not lifted by its conversation (`turn_topic`)
    floor: dict[str, float] = field(default_factory=dict)
    # per language: a request scoring this much (the in-scope probes' upper quartile) without the
    # names in it is about what this knowledge covers ("我要注销这个号" where a passage says how):
    # answered, not refused as a request (`dialogue.abstain_reason`)
    covered: dict[str, float] = field(default_factory=dict)

    def answer_for(self, lang: str) -> float:
        return threshold_for(self.answer, lang)


def threshold_for(answer: dict[str, float], lang: str) -> float:
    """A language's topic threshold; a language without one uses the highest."""
    return answer.get(lang, max(answer.values()))


def turn_topic(retrieval, floor: float = -1.0) -> float:
    """How much a turn is about this knowledge: its question's own `topic_score`, or, if higher,
    the mean of that and the score of the text searched with the conversation (the same for a
    first turn). The question alone misses a follow-up's subject ("那需要带什么材料？"), the context
    alone lifts any turn of a conversation on this knowledge. Not lifted: a question whose own
    score is under `floor` (the off-topic probes' lower quartile: "What is the capital of France?"
    after a returns question), or one nearer a shipped off-topic probe (`Retrieval.off_topic`)
    than its conversation is to the knowledge ("明天天气怎么样？" after a delivery question).
    Measured in docs/quality.md."""
    alone = topic_score(retrieval.topic, retrieval.lang)
    in_context = topic_score(retrieval.topic_in_context or retrieval.topic, retrieval.lang)
    if alone < floor or retrieval.off_topic > in_context:
        return alone
    return max(alone, (alone + in_context) / 2)


def resolve(settings, calibration: dict | None) -> Thresholds:
    """The thresholds in force (`settings`: `retrieval`): `answer_threshold` per language where the
    settings give one, else the index version's calibration."""
    answer = dict((calibration or {}).get("answer_threshold") or {})
    answer.update(settings.answer_threshold or {})
    if not answer:
        raise ConfigError("retrieval.answer_threshold: the index has no calibration and none is set; run `chatbot kb rebuild`")
    languages = (calibration or {}).get("languages", {})
    floor = {lang: c["off_topic_quartile"] for lang, c in languages.items() if "off_topic_quartile" in c}
    covered = {lang: c["in_scope_upper_quartile"] for lang, c in languages.items() if c.get("in_scope_upper_quartile") is not None}
    return Thresholds(settings.faq_threshold, answer, settings.request_threshold, floor, covered)


def topic_score(best: tuple[float, ...], lang: str) -> float:
    """One number from each dense model's best cosine (`Retrieval.topic`): for English, where the
    English model read the text, the two models' mean (MiniLM spreads English scores wider than
    e5; on the sets of docs/quality.md the mean did as well as MiniLM alone and better than e5
    alone); otherwise the multilingual model's."""
    if not best:
        return -1.0
    if lang == "en" and len(best) > 1 and best[1] > 0:
        return (best[0] + best[1]) / 2
    return best[0]


def _own_domains(in_scope: np.ndarray, by_domain: dict[str, np.ndarray]) -> list[str]:
    """The off-topic domains that are this knowledge's own subject: those whose median probe scores
    nearer the in-scope probes' median than the off-topic probes' median."""
    if not len(in_scope):
        return []
    everything = np.concatenate(list(by_domain.values()))
    middle = (float(np.median(in_scope)) + float(np.median(everything))) / 2
    own = sorted(d for d, scores in by_domain.items() if float(np.median(scores)) >= middle)
    return own if len(own) <= len(by_domain) // 2 else []  # most domains: no subject of its own stands out


def choose(in_scope: np.ndarray, by_domain: dict[str, np.ndarray]) -> dict:
    """The threshold for one language: with in-scope probes, the score that best separates them
    from the off-topic probes of the other domains (most of both on the right side: the sum of the
    two shares, highest); without any (no passage in this language), the 95th percentile of the
    off-topic probes. With the shares each side reaches there, the off-topic probes' lower
    quartile (`Thresholds.floor`) and the in-scope probes' upper quartile (`Thresholds.covered`)."""
    own = _own_domains(in_scope, by_domain)
    off = np.concatenate([s for d, s in by_domain.items() if d not in own])
    if len(in_scope):
        candidates = np.unique(np.concatenate([in_scope, off]))
        answered = (in_scope[None, :] >= candidates[:, None]).mean(axis=1)
        abstained = (off[None, :] < candidates[:, None]).mean(axis=1)
        best = int(np.argmax(answered + abstained))
        threshold = float(candidates[best])
    else:
        threshold = float(np.quantile(off, 0.95))
    return {
        "threshold": round(threshold, 4),
        "in_scope_probes": int(len(in_scope)),
        "in_scope_answered": round(float((in_scope >= threshold).mean()), 4) if len(in_scope) else None,
        "off_topic_probes": int(len(off)),
        "off_topic_abstained": round(float((off < threshold).mean()), 4),
        "off_topic_quartile": round(float(np.quantile(off, 0.25)), 4),
        "in_scope_upper_quartile": round(float(np.quantile(in_scope, 0.75)), 4) if len(in_scope) else None,
        "own_domains": own,
    }


def calibrate(index, embedder, off_topic_path: Path, cache_dir: Path | None = None) -> dict:
    """The calibration of `index`: per language, the topic threshold and the probe shares it
    reaches (`choose`), and warnings; stored in the version's manifest."""
    from chatbot.embeddings import cached_vectors, embed_queries, embedder_name, embedding_parts
    from chatbot.retrieval import titles_name_documents

    started = time.perf_counter()
    off_topic = load_off_topic(off_topic_path)
    own = in_scope_probes(index.chunks)
    probes = own + off_topic
    texts = [p.text.lower() for p in probes]  # as the chat embeds a question
    name = embedder_name(embedder)
    def embed(texts: list[str]) -> list[list[float]]:
        return embed_queries(embedder, texts)

    # The off-topic probes apart: their vectors are the same for every version (cached by content).
    vectors = np.concatenate([
        cached_vectors(cache_dir, name, texts[: len(own)], embed, prefix="probes-"),
        cached_vectors(cache_dir, name, texts[len(own) :], embed, prefix="probes-"),
    ]) if own else cached_vectors(cache_dir, name, texts, embed, prefix="probes-")
    parts = embedding_parts(embedder, index.vectors.shape[1])
    best = best_cosines(unit_parts(index.vectors, parts), vectors, parts, [p.row for p in probes])
    scores = np.asarray([topic_score(tuple(b), p.lang) for b, p in zip(best, probes)])
    languages, warnings = {}, []
    for lang in ("en", "zh"):
        in_scope = np.asarray([s for s, p in zip(scores, probes) if p.row is not None and p.lang == lang])
        by_domain: dict[str, list[float]] = {}
        for s, p in zip(scores, probes):
            if p.row is None and p.lang == lang:
                by_domain.setdefault(p.domain, []).append(float(s))
        if not by_domain:  # no off-topic probes in this language: the other language's threshold serves
            continue
        chosen = choose(in_scope, {d: np.asarray(v) for d, v in by_domain.items()})
        languages[lang] = chosen
        answered, abstained = chosen["in_scope_answered"], chosen["off_topic_abstained"]
        if answered is not None and min(answered, abstained) < SEPARATION_WANTED:
            warnings.append(
                f"{lang}: this knowledge's own questions and off-topic ones overlap: at the best threshold {answered:.0%} of its "
                f"questions would be answered and {abstained:.0%} of off-topic ones refused, so some questions near it will be "
                f"refused or answered wrongly; FAQ entries (a question and its answer) for what customers ask help, and "
                f"retrieval.answer_threshold.{lang} overrides the threshold"
            )
    for warning in warnings:
        log.warning("calibration: %s", warning)
    return {
        "version": CALIBRATION_VERSION,
        "embedder": name,
        "probes": _digest(off_topic_path),
        "answer_threshold": {lang: c["threshold"] for lang, c in languages.items()},
        "languages": languages,
        "warnings": warnings,
        "subject_tracking": titles_name_documents(index),
        "seconds": round(time.perf_counter() - started, 2),
    }


def unit_parts(passages: np.ndarray, parts: list[tuple[int, int]]) -> list[np.ndarray]:
    """Each model's columns of the passage rows as contiguous unit rows (what `best_cosines` reads)."""
    return [np.ascontiguousarray(unit_rows(passages[:, a:b])) for a, b in parts]


def best_cosines(units: list[np.ndarray], queries: np.ndarray, parts: list[tuple[int, int]], exclude: list[int | None]) -> np.ndarray:
    """For each query row, each model's best cosine over the passages (`unit_parts`; the row
    `exclude[i]` left out for query i); 0 where the query has no vector in a model's columns."""
    out = np.zeros((len(queries), len(parts)), dtype=np.float32)
    if not len(queries) or not len(units[0]):
        return out
    held = [(i, r) for i, r in enumerate(exclude) if r is not None]
    for n, ((a, b), p) in enumerate(zip(parts, units)):
        q = queries[:, a:b]
        read = np.linalg.norm(q, axis=1) > 0
        cosines = unit_rows(q) @ p.T
        for i, r in held:
            cosines[i, r] = -1.0
        out[:, n] = np.where(read, cosines.max(axis=1), 0.0)
    return out


def needs_calibration(manifest: dict, embedder_name: str, off_topic_path: Path) -> bool:
    """Whether an index version lacks a current calibration (none, an older one, another embedder,
    or other off-topic probes)."""
    c = manifest.get("calibration") or {}
    return c.get("version") != CALIBRATION_VERSION or c.get("embedder") != embedder_name or c.get("probes") != _digest(off_topic_path)


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return ""


def unit_rows(rows: np.ndarray) -> np.ndarray:
    """Each row divided by its length (a zero row stays zero)."""
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
