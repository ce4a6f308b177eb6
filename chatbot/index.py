"""The knowledge index: FAISS over passage embeddings, BM25 over their words (`lexical.py`), the
curated FAQ questions embedded on their own (matched query to query, for the verbatim-FAQ
decision), and the chunks' metadata, with their rows grouped by title.

On disk under `<data_dir>/index/`: `versions/<version>/` holds `passages.faiss`, `questions.faiss`,
`answers.npy`, `bm25/`, `chunks.jsonl` and `manifest.json`; the file `CURRENT` names the live version. A save writes
the new version in a temporary folder (files and folders fsynced), renames it into place, then
replaces `CURRENT` atomically, so a crash at any point leaves the previous version live. The
manifest records the embedder and chunker (a change means re-embedding) and whatever the caller
adds (`kb.py` keeps the document catalogue there, so documents and chunks swap together).

An index object is read-only once built and shared by every session; a new version is a new object.
The stored passage and FAQ-question vectors are kept, so an update embeds only the new chunks.

A passage that is a question with its answer (a FAQ pair, or a text that opens with a question:
`answer_text`) also has its answer embedded on its own (`answers.npy`, a zero row for the other
passages): retrieval scores such a passage by its answer too (`retrieval.py`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from chatbot.embeddings import embed_queries, embedder_name
from chatbot.errors import KnowledgeIndexError
from chatbot.lexical import tokenize

log = logging.getLogger(__name__)
# faiss's import tries its CPU builds in turn and logs each one missing with a ModuleNotFoundError,
# which reads as a failure at every start; a real failure still raises on import.
logging.getLogger("faiss.loader").setLevel(logging.WARNING)
CHUNKER_VERSION = "4"  # 3: document ids and pages; PDF, DOCX, HTML, TXT, XLSX, JSON; 4: answers embedded
KEEP_VERSIONS = 2
_OPENING_QUESTION = re.compile(r"([^.!?。！？\n]+[?？])\s*(\S.*)", re.S)  # its first sentence asks


def answer_text(chunk: Document) -> str | None:
    """The answer of a passage that is a question with its answer, with the passage's title: a
    FAQ pair's answer, or what follows a question that opens the text ("Do you have parking?
    There is onsite parking…"); None for other passages."""
    title = str(chunk.metadata.get("title") or "")
    answer = chunk.metadata.get("answer") if chunk.metadata.get("kind") == "faq" else None
    if answer is None:
        body = chunk.page_content.removeprefix(f"{title}\n") if title else chunk.page_content
        match = _OPENING_QUESTION.fullmatch(body.strip())
        if match is None:
            return None
        answer = match.group(2)
    return f"{title}\n{answer}" if title else str(answer)


def embed_answers(chunks: list[Document], embed_documents: Callable[[list[str]], list[list[float]]], dims: int) -> np.ndarray:
    """One row per chunk: its answer's passage embedding (`answer_text`), zeros where it has none."""
    rows = np.zeros((len(chunks), dims), dtype=np.float32)
    answers = {i: a for i, c in enumerate(chunks) if (a := answer_text(c)) is not None}
    if answers:
        rows[list(answers)] = np.asarray(embed_documents(list(answers.values())), dtype=np.float32)
    return rows


@dataclass(frozen=True)
class Hit:
    """A chunk and its cosine similarity to the query."""

    chunk: Document
    score: float
    row: int = -1  # the chunk's row in the passage index


class KnowledgeIndex:
    """Passages and FAQ questions, searchable by embedding. Build with `build`, persist with `save`."""

    def __init__(self, chunks: list[Document], passages, questions, bm25, manifest: dict, answers: np.ndarray | None = None):
        self.chunks = chunks
        self._passages = passages
        self._questions = questions
        self._bm25 = bm25
        self.faq_rows = [i for i, c in enumerate(chunks) if c.metadata.get("kind") == "faq"]
        self.manifest = manifest
        self._faq_units: dict[tuple[int, int], np.ndarray] = {}
        self.vectors = passages.reconstruct_n(0, passages.ntotal) if passages.ntotal else np.zeros((0, manifest["dims"]), np.float32)
        # Each passage's answer embedded on its own (`answer_text`); a zero row where it has none.
        self.answer_vectors = answers if answers is not None else np.zeros_like(self.vectors)
        by_title: dict[str, list[int]] = {}
        for row, chunk in enumerate(chunks):
            by_title.setdefault(str(chunk.metadata.get("title", "")), []).append(row)
        self.titles = {title: np.asarray(rows) for title, rows in by_title.items() if title}

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @classmethod
    def build(
        cls, chunks: list[Document], embedder: Embeddings, vectors: np.ndarray | None = None, question_vectors: np.ndarray | None = None,
        answer_vectors: np.ndarray | None = None,
    ) -> KnowledgeIndex:
        """Embed the chunks (unless their `vectors` are given), the FAQ questions (unless
        `question_vectors`, one row per FAQ chunk in order, are given) and the answers (unless
        `answer_vectors`, one row per chunk, are given: `embed_answers`), and index them."""
        if not chunks:
            raise KnowledgeIndexError("the knowledge base is empty: add documents (`chatbot kb add FILE`) or files to the knowledge folder")
        if vectors is None:
            vectors = np.asarray(embedder.embed_documents([c.page_content for c in chunks]), dtype=np.float32)
        passage_rows = np.ascontiguousarray(vectors, dtype=np.float32)
        faq_rows = [i for i, c in enumerate(chunks) if c.metadata.get("kind") == "faq"]
        questions = [chunks[i].metadata["question"] for i in faq_rows]
        if question_vectors is None:
            question_vectors = np.asarray(embed_queries(embedder, questions), dtype=np.float32)
        question_rows = np.ascontiguousarray(question_vectors, dtype=np.float32).reshape(len(faq_rows), passage_rows.shape[1])
        if answer_vectors is None:
            answer_vectors = embed_answers(chunks, embedder.embed_documents, passage_rows.shape[1])
        answer_rows = np.ascontiguousarray(answer_vectors, dtype=np.float32).reshape(passage_rows.shape)
        manifest = {
            "version": _version_name(),
            "embedder": embedder_name(embedder),
            "chunker": CHUNKER_VERSION,
            "chunks": len(chunks),
            "faqs": len(faq_rows),
            "dims": int(passage_rows.shape[1]),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        return cls.from_arrays(chunks, passage_rows, question_rows, answer_rows, manifest)

    @classmethod
    def from_arrays(cls, chunks: list[Document], vectors: np.ndarray, question_vectors: np.ndarray, answer_vectors: np.ndarray, manifest: dict) -> KnowledgeIndex:
        """The index of stored rows (one vector and answer vector per chunk, one question vector per
        FAQ chunk in order) under `manifest`: FAISS and BM25 built in memory (`index_store.py`)."""
        bm25s = _bm25s()
        import faiss

        passage_rows = np.ascontiguousarray(vectors, dtype=np.float32)
        passages = faiss.IndexFlatIP(passage_rows.shape[1])
        passages.add(passage_rows)
        question_index = faiss.IndexFlatIP(passage_rows.shape[1])
        if len(question_vectors):
            question_index.add(np.ascontiguousarray(question_vectors, dtype=np.float32))
        bm25 = bm25s.BM25()
        bm25.index([tokenize(c.page_content) for c in chunks], show_progress=False)
        return cls(chunks, passages, question_index, bm25, manifest, np.ascontiguousarray(answer_vectors, dtype=np.float32))

    def new_version(self, changes: dict) -> KnowledgeIndex:
        """The same passages as a new version whose manifest has `changes` (a new calibration)."""
        manifest = self.manifest | changes | {"version": _version_name(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        return KnowledgeIndex(self.chunks, self._passages, self._questions, self._bm25, manifest, self.answer_vectors)

    def search(self, query_vector: list[float], k: int) -> list[Hit]:
        """The `k` passages most similar to the query, best first."""
        scores, rows = self._passages.search(np.asarray([query_vector], dtype=np.float32), min(k, len(self.chunks)))
        return [Hit(self.chunks[r], float(s), int(r)) for s, r in zip(scores[0], rows[0]) if r >= 0]

    @property
    def question_vectors(self) -> np.ndarray:
        """The embedded FAQ questions, one row per FAQ chunk in chunk order."""
        return self._questions.reconstruct_n(0, self._questions.ntotal) if self._questions.ntotal else np.zeros((0, self.vectors.shape[1]), np.float32)

    def passage_vector(self, row: int) -> np.ndarray:
        """The stored embedding of the chunk at `row`."""
        return self.vectors[row]

    def names(self, word: str) -> bool:
        """Whether a passage has `word` among its BM25 tokens (`lexical.tokenize`)."""
        return word in self._bm25.vocab_dict

    def bm25_scores(self, tokens: list[str]) -> np.ndarray:
        """The BM25 score of every chunk for the query `tokens` (zeros when none is known)."""
        if not tokens:
            return np.zeros(len(self.chunks), dtype=np.float32)
        return self._bm25.get_scores(tokens)

    def best_faq(self, query_vector: list[float], part: tuple[int, int] | None = None) -> Hit | None:
        """The curated FAQ whose question is most similar to the query, if there are FAQs; by the
        cosine within the columns `part` (one model of `PairedEmbeddings`) when given."""
        if not self.faq_rows:
            return None
        a, b = part or (0, self.vectors.shape[1])
        if (a, b) not in self._faq_units:  # the FAQ questions as unit rows within those columns, once
            questions = self.question_vectors[:, a:b]
            self._faq_units[(a, b)] = questions / np.maximum(np.linalg.norm(questions, axis=1, keepdims=True), 1e-12)
        q = np.asarray(query_vector, dtype=np.float32)[a:b]
        scores = self._faq_units[(a, b)] @ q / max(float(np.linalg.norm(q)), 1e-12)
        best = int(np.argmax(scores))
        row = self.faq_rows[best]
        return Hit(self.chunks[row], float(scores[best]), row)

    def save(self, index_dir: Path, checkpoint=lambda name: None) -> Path:
        """Write this version beside the others and make it the live one. Call it with the
        writer's lock held (`kb.py`); `checkpoint` is called between the steps (crash tests)."""
        import faiss

        versions = index_dir / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        tmp = versions / f".{self.version}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        faiss.write_index(self._passages, str(tmp / "passages.faiss"))
        faiss.write_index(self._questions, str(tmp / "questions.faiss"))
        np.save(tmp / "answers.npy", self.answer_vectors)
        self._bm25.save(str(tmp / "bm25"), show_progress=False)
        lines = [json.dumps({"text": c.page_content, "metadata": c.metadata}, ensure_ascii=False) for c in self.chunks]
        (tmp / "chunks.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (tmp / "manifest.json").write_text(json.dumps(self.manifest, indent=2), encoding="utf-8")
        for path in [*tmp.rglob("*"), tmp]:
            _fsync(path)
        checkpoint("before-rename")
        final = versions / self.version
        os.replace(tmp, final)
        _fsync(versions)
        checkpoint("before-swap")
        atomic_write(index_dir / "CURRENT", self.version.encode())
        checkpoint("after-swap")
        _remove_old_versions(versions, live=self.version)
        return final

    @classmethod
    def load(cls, index_dir: Path) -> KnowledgeIndex:
        """The live version under `index_dir`."""
        bm25s = _bm25s()
        import faiss

        version = current_version(index_dir)
        if version is None:
            raise KnowledgeIndexError(f"no knowledge index in {index_dir}; run `chatbot kb rebuild`")
        folder = index_dir / "versions" / version
        try:
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
            chunks = []
            for line in (folder / "chunks.jsonl").read_text(encoding="utf-8").splitlines():
                row = json.loads(line)
                chunks.append(Document(id=row["metadata"]["id"], page_content=row["text"], metadata=row["metadata"]))
            passages = faiss.read_index(str(folder / "passages.faiss"))
            questions = faiss.read_index(str(folder / "questions.faiss"))
            # None for a version made before answers were embedded (chunker 3): `kb` re-embeds it.
            answers = np.load(folder / "answers.npy") if (folder / "answers.npy").is_file() else None
            bm25 = bm25s.BM25.load(str(folder / "bm25"), show_progress=False, verbosity=0)
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            raise KnowledgeIndexError(f"the index in {folder} is unreadable ({e}); run `chatbot kb rebuild`") from e
        return cls(chunks, passages, questions, bm25, manifest, answers)


def _version_name() -> str:
    """A new version's name: the time, which sorts by age."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def live_manifest(index_dir: Path) -> dict | None:
    """The live version's manifest alone (its documents, embedder, counts), or None when there is
    no index: what listing needs, without loading FAISS and BM25."""
    version = current_version(index_dir)
    if version is None:
        return None
    try:
        return json.loads((index_dir / "versions" / version / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise KnowledgeIndexError(f"the index version {version} is unreadable ({e}); run `chatbot kb rebuild`") from e


def current_version(index_dir: Path) -> str | None:
    """The live version's name, or None when there is no index."""
    try:
        return (index_dir / "CURRENT").read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def _bm25s():
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # its import sets DEBUG: a line per build
    return bm25s


def _fsync(path: Path) -> None:
    """Flush a file, or a folder's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a crash leaves the old file or the new one, never half:
    a temporary file, fsynced, renamed over it, and the folder fsynced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync(path.parent)


def _remove_old_versions(versions: Path, live: str) -> None:
    """Keep the live version and the one before it; remove the rest, and what crashed writes left
    (temporary folders, versions never made live)."""
    names = sorted(p.name for p in versions.iterdir() if p.is_dir() and not p.name.startswith("."))
    older = [n for n in names if n < live]
    keep = {live, *older[-(KEEP_VERSIONS - 1) :]} if KEEP_VERSIONS > 1 else {live}
    for path in versions.iterdir():
        if path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)
