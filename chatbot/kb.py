"""The knowledge base: documents added, replaced and removed, each change a new index version.

- A document's id comes from its content (`ingest.document_id`): adding the same file again
  changes nothing; a file with new content under a known name replaces that document's chunks.
- Originals are kept content-addressed (`<data_dir>/kb/originals/`, or rows), so `rebuild` can re-chunk
  and re-embed everything (a new embedder or chunker makes `open` do it by itself).
- The document catalogue lives in the index version's manifest, so documents and chunks change
  together in one atomic swap. Versions, originals and the writer's lock are kept where
  `index.backend` says (`index_store.py`: files under the data dir, or PostgreSQL with pgvector
  for replicas); one writer at a time, its lock released if the writer dies. Only new chunks are
  embedded; the rest keep their stored vectors.
- The knowledge folder (`knowledge_dir`) seeds the base: `open` adds its new and changed files and
  removes documents whose file left the folder. A folder document an admin removed stays removed
  (its content id is remembered) until the file changes.
- A bad file is refused with an error naming it and what to do; the rest of the batch goes in.

Setting `KEFU_CRASH_AT` to a step name kills the process there with SIGKILL: the crash tests use it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from chatbot.calibration import OFF_TOPIC_FILE, calibrate, needs_calibration
from chatbot.config import Settings
from chatbot.embeddings import embed_queries, embedder_name
from chatbot.errors import KnowledgeIndexError, UserError
from chatbot.formats import SUFFIXES
from chatbot.index import CHUNKER_VERSION, KnowledgeIndex, embed_answers
from chatbot.index_store import open_versions
from chatbot.ingest import IngestError, document_id, read_document

log = logging.getLogger(__name__)
Progress = Callable[[float, str], None]  # fraction done 0-1, what is happening
EMBED_BATCH = 64  # chunks per embedding call: sorted by length within it; progress and the crash checkpoint between


@dataclass
class Upload:
    """A file to add: its document name and its bytes."""

    name: str
    data: bytes
    origin: str = "upload"  # or "folder": it mirrors a file of the knowledge folder


@dataclass
class Report:
    """What one change did."""

    added: list[dict] = field(default_factory=list)
    replaced: list[dict] = field(default_factory=list)
    removed: list[dict] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # one error per file, naming it
    version: str | None = None
    seconds: float = 0.0
    embedded_chunks: int = 0
    index: KnowledgeIndex | None = field(default=None, repr=False)  # the version made live, in memory

    @property
    def changed(self) -> bool:
        return bool(self.added or self.replaced or self.removed)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("added", "replaced", "removed", "unchanged", "refused", "version", "seconds", "embedded_chunks")}


def chunks_label(n: int) -> str:
    return "1 chunk" if n == 1 else f"{n} chunks"


def check_name(name: str) -> str:
    """A document name as given (a relative POSIX path); an IngestError for anything that could
    point outside the knowledge base or hide what it is."""
    shown = repr(name) if any(ord(c) < 32 for c in name) else name
    if not name or len(name) > 255 or any(ord(c) < 32 for c in name):
        raise IngestError(f"{shown}: not a usable file name; rename the file (plain characters, at most 255) and upload it again")
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (len(name) > 1 and name[1] == ":"):
        raise IngestError(f"{shown}: refused: the file name is a path outside the knowledge base; upload it under its plain name, e.g. '{path.name or 'file.pdf'}'")
    return name


class KnowledgeBase:
    """The documents of one data dir. Readers use `live()`; writers `add`, `remove`, `rebuild`, `open`."""

    def __init__(self, settings: Settings, embedder: Embeddings) -> None:
        self.settings = settings
        self.embedder = embedder
        self.versions = open_versions(settings)
        self.off_topic = settings.prompts_dir / OFF_TOPIC_FILE  # the calibration's off-topic probes
        self.max_bytes = int(settings.kb.max_file_mb * 2**20)

    # --- reading ---------------------------------------------------------------------------------

    def live(self) -> KnowledgeIndex:
        """The live version (loaded from where `index.backend` keeps it)."""
        for attempt in range(3):  # a writer may swap and clean up between reading CURRENT and loading
            try:
                return self.versions.load()
            except KnowledgeIndexError:
                if attempt == 2 or self.versions.current() is None:
                    raise
                time.sleep(0.2)
        raise AssertionError("unreachable")

    def documents(self, index: KnowledgeIndex | None = None) -> list[dict]:
        """The catalogue: one entry per document (id, name, type, chunks, size, added, origin), of
        `index` or else of the live version (its manifest alone is read)."""
        manifest = index.manifest if index is not None else self.versions.manifest() or {}
        return list(manifest.get("documents", []))

    # --- writing ---------------------------------------------------------------------------------

    def add(self, uploads: list[Upload], progress: Progress | None = None) -> Report:
        """Add files; a known content is unchanged, a known name with new content is replaced."""
        with self.versions.writing():
            return self._update(self._ready(progress), uploads, set(), progress)

    def try_change(self, uploads: list[Upload] = (), remove: tuple[str, ...] = (), progress: Progress | None = None) -> Report:
        """The version that adding `uploads` and removing `remove` (ids or names) would make,
        built and calibrated but not made live (`Report.index`; nothing of the live version
        changes): a shadow to replay questions on before publishing (`chatbot/replay.py`)."""
        with self.versions.writing():
            live = self._ready(progress)
            return self._update(live, list(uploads), self._chosen(live, remove), progress, publish=False)

    def remove(self, *doc_ids: str) -> Report:
        """Remove documents (by id, or by name) and all their chunks, in one new version."""
        with self.versions.writing():
            live = self._ready(None)
            chosen = self._chosen(live, doc_ids)
            if len(chosen) == len(self.documents(live) if live else []):
                raise UserError("that would remove every document; add another before removing the last one")
            return self._update(live, [], chosen, None)

    def _chosen(self, live: KnowledgeIndex | None, doc_ids) -> set[str]:
        """The ids of the documents named (by id or name) in `doc_ids`; an unknown one is an error."""
        docs = self.documents(live) if live else []
        chosen = set()
        for doc_id in doc_ids:
            match = [d["id"] for d in docs if doc_id in (d["id"], d["name"])]
            if not match:
                raise UserError(f"no document '{doc_id}' in the knowledge base; `chatbot kb list` shows the ids")
            chosen.add(match[0])
        return chosen

    def rebuild(self, progress: Progress | None = None) -> Report:
        """Re-read every original and re-chunk and re-embed everything (a new embedder or chunker)."""
        with self.versions.writing():
            return self._rebuild(self._live_or_none(), progress)

    def open(self, knowledge_dir: Path | None = None, progress: Progress | None = None, on_sync: Callable[[Report], None] | None = None) -> KnowledgeIndex:
        """The live index, made ready first: rebuilt when the embedder or chunker changed, and
        brought in line with the knowledge folder (`on_sync` gets the report of a change it made:
        the audit log's "kb-sync" row, `runtime.audit_folder_sync`)."""
        knowledge_dir = knowledge_dir or self.settings.knowledge_dir
        with self.versions.writing():
            live = self._ready(progress)
            uploads, gone = self._folder_changes(knowledge_dir, live)
            if live is None or uploads or gone:
                report = self._update(live, uploads, gone, progress, folder_sync=True)
                live = report.index or live
                for error in report.refused:
                    log.warning("skipped a knowledge file: %s", error)
                if report.changed and on_sync is not None:
                    on_sync(report)
                if report.changed:
                    log.info(
                        "knowledge folder: %d added, %d replaced, %d removed; index %s",
                        len(report.added), len(report.replaced), len(report.removed), report.version,
                    )
        assert live is not None  # an empty base was refused by _update
        return live

    # --- internals -------------------------------------------------------------------------------

    def _live_or_none(self) -> KnowledgeIndex | None:
        if self.versions.current() is None:
            return None
        try:
            return self.live()
        except KnowledgeIndexError as e:
            log.warning("%s; starting from the knowledge folder and the kept originals", e)
            return None

    def _ready(self, progress: Progress | None) -> KnowledgeIndex | None:
        """The live version, re-embedded first if it was made with another embedder or chunker."""
        live = self._live_or_none()
        if live is not None and not self._compatible(live):
            log.info("the index was made with another embedder or chunker; re-embedding every document")
            live = self._rebuild(live, progress).index
        elif live is not None and needs_calibration(live.manifest, embedder_name(self.embedder), self.off_topic):
            log.info("calibrating the index version %s (it has no current calibration)", live.version)
            live = live.new_version({"calibration": self._calibrate(live)})
            self.versions.save(live, checkpoint)
        return live

    def _calibrate(self, index: KnowledgeIndex) -> dict:
        return calibrate(index, self.embedder, self.off_topic, self.settings.data_dir / "cache" / "embeddings")

    def _compatible(self, index: KnowledgeIndex) -> bool:
        m = index.manifest
        return m.get("embedder") == embedder_name(self.embedder) and m.get("chunker") == CHUNKER_VERSION and "documents" in m

    def _folder_changes(self, knowledge_dir: Path, live: KnowledgeIndex | None) -> tuple[list[Upload], set[str]]:
        docs = {d["name"]: d for d in (self.documents(live) if live else [])}
        tombstones = set((live.manifest.get("removed") or {}) if live else {})
        uploads = []
        present = set()
        for path in sorted(knowledge_dir.rglob("*")) if knowledge_dir.is_dir() else []:
            if not path.is_file() or path.name.lower() == "readme.md" or path.name.startswith("."):
                continue
            if path.suffix.lower() not in SUFFIXES:
                continue
            name = path.relative_to(knowledge_dir).as_posix()
            present.add(name)
            data = path.read_bytes()
            doc_id = document_id(data)
            known = docs.get(name)
            if known and (known["id"] == doc_id or known.get("origin") != "folder") or doc_id in tombstones:
                continue  # unchanged, replaced by an admin's upload, or removed by an admin
            uploads.append(Upload(name, data, origin="folder"))
        gone = {d["id"] for name, d in docs.items() if d.get("origin") == "folder" and name not in present}
        return uploads, gone

    def _rebuild(self, live: KnowledgeIndex | None, progress: Progress | None) -> Report:
        uploads, missing = [], []
        for doc in self.documents(live) if live else []:
            data = self.versions.get_original(doc["sha256"])
            if data is not None:
                uploads.append(Upload(doc["name"], data, doc.get("origin", "upload")))
            else:
                missing.append(f"{doc['name']}: its original is missing from {self.versions}; add the file again")
        removed = dict(live.manifest.get("removed") or {}) if live else {}
        report = self._update(None, uploads, set(), progress, tombstones=removed, added_at={d["id"]: d["added"] for d in self.documents(live)} if live else {})
        report.refused += missing
        return report

    def _update(
        self,
        live: KnowledgeIndex | None,
        uploads: list[Upload],
        remove_ids: set[str],
        progress: Progress | None,
        *,
        folder_sync: bool = False,
        tombstones: dict[str, str] | None = None,
        added_at: dict[str, str] | None = None,
        publish: bool = True,
    ) -> Report:
        """One change: read and check the uploads, keep their originals, embed the new chunks,
        and write and swap in a new version (with `publish` false: the version in memory only,
        `try_change`). Called with the writer's lock held."""
        started = time.perf_counter()
        report_progress = progress or (lambda fraction, text: None)
        report = Report()
        docs = {d["id"]: d for d in (self.documents(live) if live else [])}
        by_name = {d["name"]: d["id"] for d in docs.values()}
        removed = dict(tombstones if tombstones is not None else (live.manifest.get("removed") or {}) if live else {})
        for doc_id in remove_ids:
            doc = docs.pop(doc_id)
            by_name.pop(doc["name"], None)
            report.removed.append(doc)
            if doc.get("origin") == "folder" and not folder_sync:
                removed[doc_id] = doc["name"]  # an admin removed it: the folder must not bring it back
        new_chunks: dict[str, list[Document]] = {}
        for n, upload in enumerate(uploads):
            report_progress(0.1 * n / max(len(uploads), 1), f"reading {upload.name}")
            try:
                entry, chunks = self._read(upload)
            except IngestError as e:
                report.refused.append(str(e))
                continue
            if entry["id"] in docs or entry["id"] in new_chunks:
                report.unchanged.append(upload.name)
                continue
            old = by_name.get(upload.name)
            if old is not None:
                report.replaced.append(docs.pop(old))
            entry["added"] = (added_at or {}).get(entry["id"]) or datetime.now(UTC).isoformat(timespec="seconds")
            docs[entry["id"]] = entry
            by_name[upload.name] = entry["id"]
            new_chunks[entry["id"]] = chunks
            removed.pop(entry["id"], None)
            if old is None:
                report.added.append(entry)
        checkpoint("after-originals")
        report.refused = list(dict.fromkeys(report.refused))  # the same bad file twice: said once
        if not (report.added or report.replaced or report.removed) and live is not None:
            report.version, report.seconds = live.version, time.perf_counter() - started
            return report
        # Chunks in catalogue order: kept ones with their stored vectors, new ones embedded.
        chunks, vectors, question_vectors, answer_vectors = [], [], [], []
        if live is not None:
            kept = [i for i, c in enumerate(live.chunks) if c.metadata.get("doc_id") in docs]
            chunks = [live.chunks[i] for i in kept]
            vectors = [live.vectors[kept]]
            question_vectors = [live.question_vectors[[n for n, row in enumerate(live.faq_rows) if live.chunks[row].metadata.get("doc_id") in docs]]]
            answer_vectors = [live.answer_vectors[kept]]
        fresh = [c for doc_chunks in new_chunks.values() for c in doc_chunks]
        edited = replaced_questions(chunks + fresh)
        fresh += [c for c in self._hidden(live, docs, new_chunks) if c.metadata.get("question") not in edited]  # an edit that left
        if fresh:
            vecs, qvecs, avecs = self._embed(fresh, report_progress)
            chunks += fresh
            vectors.append(vecs)
            question_vectors.append(qvecs)
            answer_vectors.append(avecs)
        chunks, vectors, question_vectors, answer_vectors = _without_edited(
            chunks, np.concatenate(vectors), np.concatenate(question_vectors), np.concatenate(answer_vectors), edited)
        if not chunks:
            raise KnowledgeIndexError("the knowledge base is empty: add documents (`chatbot kb add FILE`) or files to the knowledge folder")
        report_progress(0.95, "writing the new index version")
        index = KnowledgeIndex.build(chunks, self.embedder, vectors=vectors, question_vectors=question_vectors, answer_vectors=answer_vectors)
        index.manifest |= {
            "edited": sorted(edited),
            "documents": sorted(docs.values(), key=lambda d: d["name"]),
            "removed": removed,
            "refused": report.refused if folder_sync else list((live.manifest.get("refused") or []) if live else []),
        }
        report_progress(0.96, "calibrating when to answer on this knowledge")
        index.manifest["calibration"] = self._calibrate(index)
        report.version, report.embedded_chunks, report.index = index.version, len(fresh), index
        if not publish:
            report.seconds = time.perf_counter() - started
            report_progress(1.0, f"index {index.version} is ready to try (not live)")
            return report
        self.versions.save(index, checkpoint)
        self.versions.collect_originals({d["sha256"] for d in docs.values()})
        report.seconds = time.perf_counter() - started
        report_progress(1.0, f"index {index.version} is live")
        log.info("knowledge base: version %s, %d documents, %d chunks (%d embedded) in %.1f s", index.version, len(docs), len(chunks), len(fresh), report.seconds)
        return report

    def _read(self, upload: Upload) -> tuple[dict, list[Document]]:
        """Check and chunk one upload, and keep its original; the catalogue entry and chunks."""
        name = check_name(upload.name)
        if len(upload.data) > self.max_bytes:
            raise IngestError(
                f"{name}: {len(upload.data) / 2**20:.1f} MB is over the {self.settings.kb.max_file_mb:g} MB limit; "
                f"split it into smaller files (or raise kb.max_file_mb) and upload again"
            )
        parsed, chunks = read_document(name, upload.data)
        sha = hashlib.sha256(upload.data).hexdigest()
        self.versions.put_original(sha, upload.data)
        entry = {
            "id": document_id(upload.data), "name": name, "type": parsed.type, "title": parsed.title,
            "chunks": len(chunks), "size": len(upload.data), "sha256": sha, "origin": upload.origin,
        }
        return entry, chunks

    def _embed(self, chunks: list[Document], progress: Progress) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Passage vectors of `chunks` (in batches), query vectors of their FAQ questions, and
        their answers' vectors (`index.embed_answers`)."""
        rows = []
        for start in range(0, len(chunks), EMBED_BATCH):
            batch = chunks[start : start + EMBED_BATCH]
            rows.append(np.asarray(self.embedder.embed_documents([c.page_content for c in batch]), dtype=np.float32))
            done = start + len(batch)
            progress(0.1 + 0.8 * done / len(chunks), f"embedded {done} of {len(chunks)} chunks")
            if start == 0:
                checkpoint("mid-embedding")
        questions = [c.metadata["question"] for c in chunks if c.metadata.get("kind") == "faq"]
        qvecs = np.asarray(embed_queries(self.embedder, questions), dtype=np.float32)
        progress(0.92, "embedding the answers of question-and-answer chunks")
        answers = embed_answers(chunks, self.embedder.embed_documents, rows[0].shape[1])
        return np.concatenate(rows), qvecs.reshape(len(questions), rows[0].shape[1]), answers

    def _hidden(self, live: KnowledgeIndex | None, docs: dict[str, dict], new_chunks: dict[str, list[Document]]) -> list[Document]:
        """The chunks of kept documents that the live version left out (FAQ entries another
        document's rows edit, `replaced_questions`), read again from their originals."""
        if live is None:
            return []
        present = Counter(c.metadata.get("doc_id") for c in live.chunks)
        ids = {c.metadata.get("id") for c in live.chunks}
        hidden = []
        for doc_id, entry in docs.items():
            if doc_id in new_chunks or present[doc_id] >= entry["chunks"]:
                continue
            original = self.versions.get_original(entry["sha256"])
            if original is None:
                log.warning("%s: its original is missing from %s; its edited FAQ entries stay out", entry["name"], self.versions)
                continue
            _, chunks = read_document(entry["name"], original)
            hidden += [c for c in chunks if c.metadata.get("id") not in ids]
        return hidden


def replaced_questions(chunks: list[Document]) -> set[str]:
    """The questions of FAQ entries that a row of another document edits (its `replaces` column:
    an approved gap draft, `gaps.py`): those entries are left out of the index while the editing
    document is in it, and come back when it leaves."""
    return {str(c.metadata["replaces"]) for c in chunks if c.metadata.get("replaces")}


def _without_edited(chunks: list[Document], vectors: np.ndarray, question_vectors: np.ndarray, answer_vectors: np.ndarray, edited: set[str]):
    """`chunks` and their rows less the FAQ entries whose question an edit replaces (not the edits)."""
    keep = [not (c.metadata.get("kind") == "faq" and not c.metadata.get("replaces") and c.metadata.get("question") in edited) for c in chunks]
    if all(keep):
        return chunks, vectors, question_vectors, answer_vectors
    faq_keep = [k for k, c in zip(keep, chunks) if c.metadata.get("kind") == "faq"]
    rows = np.flatnonzero(keep)
    return [chunks[i] for i in rows], vectors[rows], question_vectors[np.flatnonzero(faq_keep)], answer_vectors[rows]


def checkpoint(name: str) -> None:
    """A step of an update; `KEFU_CRASH_AT=<name>` kills the process here (crash tests)."""
    if os.environ.get("KEFU_CRASH_AT") == name:
        log.warning("KEFU_CRASH_AT=%s: killing this process", name)
        os.kill(os.getpid(), signal.SIGKILL)
