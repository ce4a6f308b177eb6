"""Where the knowledge's index versions and uploaded originals are kept (`index.backend`).

- `FileVersions` (`faiss`, the embedded default): version folders under `<data_dir>/index` with a
  `CURRENT` pointer (`index.py`), originals content-addressed under `<data_dir>/kb/originals`, and
  an exclusive `flock` on `<data_dir>/kb/lock` for the one writer.
- `PgVersions` (`pgvector`): PostgreSQL with the pgvector extension at `database.url`, shared by
  every replica. Each version's chunks, with their passage, answer and FAQ-question embeddings as
  `vector` columns, and its manifest (the document catalogue) are rows; the live version is the one
  row of `kb_live`, set in the same transaction that writes the version, so every replica's next
  turn uses a new version (`runtime.IndexWatcher` polls `current`) and a removed document is never
  retrieved again, with no file copied. The writer holds a session advisory lock, released by the
  server when its connection ends (a killed writer leaves no lock). Originals are rows too.

Each replica keeps the live version in memory, FAISS and BM25 built from the stored rows
(`KnowledgeIndex.from_arrays`): retrieval reads every passage's vector on every turn (the topic
check's best cosine over all passages, a named title's passages scored directly), so searching
inside the database would add a round trip without sparing that; both backends run the same
retrieval and decision code on the same float32 vectors, so they rank alike.
"""

from __future__ import annotations

import fcntl
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from langchain_core.documents import Document

from chatbot.config import Settings
from chatbot.errors import ConfigError, KnowledgeIndexError
from chatbot.index import KEEP_VERSIONS, KnowledgeIndex, atomic_write, current_version, live_manifest

log = logging.getLogger(__name__)
Checkpoint = Callable[[str], None]
_WRITER_LOCK = 0x4B454655_6B62  # advisory lock keys: the knowledge base's one writer ("KEFUkb")...
_SCHEMA_LOCK = _WRITER_LOCK + 1  # ...and whoever creates the tables


def open_versions(settings: Settings) -> FileVersions | PgVersions:
    """The version store `index.backend` names."""
    if settings.index.backend == "faiss":
        return FileVersions(settings.index_dir, settings.kb_dir)
    url = settings.database.url
    if not url.startswith(("postgresql", "postgres")):
        raise ConfigError("index.backend: pgvector keeps the knowledge in PostgreSQL: set database.url (CHATBOT_DATABASE_URL) to a "
                          "postgresql+psycopg:// URL of a server with the pgvector extension, or use index.backend: faiss")
    return PgVersions(url)


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (`postgresql+psycopg://...`) as psycopg itself takes it."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1).replace("postgres://", "postgresql://", 1)


class FileVersions:
    """Versions as folders on local disk (`index.py`); one machine, or a shared data dir."""

    def __init__(self, index_dir: Path, kb_dir: Path) -> None:
        self.index_dir, self.kb_dir = index_dir, kb_dir
        self.originals = kb_dir / "originals"

    def __str__(self) -> str:
        return str(self.index_dir)

    def current(self) -> str | None:
        return current_version(self.index_dir)

    def manifest(self) -> dict | None:
        return live_manifest(self.index_dir)

    def load(self) -> KnowledgeIndex:
        return KnowledgeIndex.load(self.index_dir)

    def save(self, index: KnowledgeIndex, checkpoint: Checkpoint) -> None:
        index.save(self.index_dir, checkpoint)

    @contextmanager
    def writing(self) -> Iterator[None]:
        self.kb_dir.mkdir(parents=True, exist_ok=True)
        with (self.kb_dir / "lock").open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("waiting for another knowledge-base update to finish")
                fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def put_original(self, sha256: str, data: bytes) -> None:
        path = self.originals / sha256
        if not path.is_file():  # content-addressed: a file already there is this content
            atomic_write(path, data)

    def get_original(self, sha256: str) -> bytes | None:
        path = self.originals / sha256
        return path.read_bytes() if path.is_file() else None

    def collect_originals(self, used: set[str]) -> None:
        """Remove originals that no document of `used` or of a kept version uses."""
        for folder in (self.index_dir / "versions").iterdir():
            try:
                manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
                used = used | {d["sha256"] for d in manifest.get("documents", [])}
            except (OSError, ValueError):
                continue
        for path in self.originals.iterdir() if self.originals.is_dir() else []:
            if path.name not in used and not path.name.startswith("."):
                path.unlink(missing_ok=True)


_SCHEMA = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS kb_versions (
    version text PRIMARY KEY,
    manifest jsonb NOT NULL,
    made timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS kb_chunks (
    version text NOT NULL REFERENCES kb_versions ON DELETE CASCADE,
    row_number integer NOT NULL,
    text text NOT NULL,
    metadata jsonb NOT NULL,
    embedding vector NOT NULL,
    answer vector NOT NULL,
    question vector,
    PRIMARY KEY (version, row_number)
);
CREATE TABLE IF NOT EXISTS kb_live (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    version text NOT NULL REFERENCES kb_versions
);
CREATE TABLE IF NOT EXISTS kb_originals (
    sha256 text PRIMARY KEY,
    data bytea NOT NULL
);
"""


class PgVersions:
    """Versions as rows of PostgreSQL with pgvector, shared by every replica."""

    def __init__(self, url: str) -> None:
        self.url = libpq_url(url)
        self._ready = False

    def __str__(self) -> str:
        return "PostgreSQL (pgvector)"

    def _connect(self, autocommit: bool = True):
        import psycopg
        from pgvector.psycopg import register_vector

        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as e:
            raise KnowledgeIndexError(f"cannot reach the knowledge's PostgreSQL at database.url ({str(e).strip()[:200]}); start it or fix the URL") from e
        if not self._ready:
            conn.execute("SELECT pg_advisory_lock(%s)", (_SCHEMA_LOCK,))  # replicas starting together: one creates the tables
            try:
                conn.execute(_SCHEMA)
            except psycopg.Error as e:
                conn.close()
                raise KnowledgeIndexError(f"cannot set up the knowledge's tables in PostgreSQL ({str(e).strip()[:200]}); index.backend: pgvector "
                                          "needs the pgvector extension on the server (Debian: postgresql-NN-pgvector), or use index.backend: faiss") from e
            finally:
                if not conn.closed:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK,))
            self._ready = True
        register_vector(conn)
        conn.autocommit = autocommit
        return conn

    def current(self) -> str | None:
        with self._connect() as conn:
            row = conn.execute("SELECT version FROM kb_live").fetchone()
        return row[0] if row else None

    def manifest(self) -> dict | None:
        with self._connect() as conn:
            row = conn.execute("SELECT v.manifest FROM kb_live l JOIN kb_versions v USING (version)").fetchone()
        return row[0] if row else None

    def load(self) -> KnowledgeIndex:
        with self._connect() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # the manifest and rows of one version
            row = conn.execute("SELECT v.version, v.manifest FROM kb_live l JOIN kb_versions v USING (version)").fetchone()
            if row is None:
                raise KnowledgeIndexError("no knowledge index in PostgreSQL; run `chatbot kb rebuild`")
            version, manifest = row
            rows = conn.cursor(binary=True).execute("SELECT text, metadata, embedding, answer, question FROM kb_chunks WHERE version = %s ORDER BY row_number",
                                                    (version,)).fetchall()
        if not rows:
            raise KnowledgeIndexError(f"the index version {version} has no chunks in PostgreSQL; run `chatbot kb rebuild`")
        chunks = [Document(id=meta["id"], page_content=text, metadata=meta) for text, meta, *_ in rows]
        vectors = np.stack([_array(r[2]) for r in rows])
        answers = np.stack([_array(r[3]) for r in rows])
        questions = [_array(r[4]) for r in rows if r[1].get("kind") == "faq"]
        question_vectors = np.stack(questions) if questions else np.zeros((0, vectors.shape[1]), np.float32)
        return KnowledgeIndex.from_arrays(chunks, vectors, question_vectors, answers, manifest)

    def save(self, index: KnowledgeIndex, checkpoint: Checkpoint) -> None:
        """Write the version and make it live in one transaction; keep the one before it."""
        from psycopg.types.json import Jsonb

        questions = iter(index.question_vectors)
        with self._connect(autocommit=False) as conn:
            conn.execute("INSERT INTO kb_versions (version, manifest) VALUES (%s, %s)", (index.version, Jsonb(index.manifest)))
            with conn.cursor().copy("COPY kb_chunks (version, row_number, text, metadata, embedding, answer, question) FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["text", "int4", "text", "jsonb", "vector", "vector", "vector"])  # vectors as binary floats: 20x faster than text
                for row, chunk in enumerate(index.chunks):
                    question = next(questions) if chunk.metadata.get("kind") == "faq" else None
                    copy.write_row((index.version, row, chunk.page_content, chunk.metadata,
                                    index.vectors[row], index.answer_vectors[row], question))
            checkpoint("before-swap")
            conn.execute("INSERT INTO kb_live (one, version) VALUES (true, %s) ON CONFLICT (one) DO UPDATE SET version = EXCLUDED.version",
                         (index.version,))
            kept = [r[0] for r in conn.execute("SELECT version FROM kb_versions ORDER BY version DESC LIMIT %s", (KEEP_VERSIONS,)).fetchall()]
            conn.execute("DELETE FROM kb_versions WHERE NOT (version = ANY(%s))", (kept,))
            conn.commit()
        checkpoint("after-swap")

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._connect() as conn:
            if not conn.execute("SELECT pg_try_advisory_lock(%s)", (_WRITER_LOCK,)).fetchone()[0]:
                log.info("waiting for another knowledge-base update to finish")
                conn.execute("SELECT pg_advisory_lock(%s)", (_WRITER_LOCK,))
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_WRITER_LOCK,))

    def put_original(self, sha256: str, data: bytes) -> None:
        with self._connect() as conn:
            conn.execute("INSERT INTO kb_originals (sha256, data) VALUES (%s, %s) ON CONFLICT (sha256) DO NOTHING", (sha256, data))

    def get_original(self, sha256: str) -> bytes | None:
        with self._connect() as conn:
            row = conn.execute("SELECT data FROM kb_originals WHERE sha256 = %s", (sha256,)).fetchone()
        return bytes(row[0]) if row else None

    def collect_originals(self, used: set[str]) -> None:
        with self._connect() as conn:
            for (manifest,) in conn.execute("SELECT manifest FROM kb_versions").fetchall():
                used = used | {d["sha256"] for d in manifest.get("documents", [])}
            conn.execute("DELETE FROM kb_originals WHERE NOT (sha256 = ANY(%s))", (sorted(used),))



def _array(vector) -> np.ndarray:
    """A stored `vector` as float32 (pgvector's `Vector`, or an array from older adapters)."""
    return np.asarray(vector.to_numpy() if hasattr(vector, "to_numpy") else vector, dtype=np.float32)
