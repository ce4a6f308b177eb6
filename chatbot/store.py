"""The conversation store (SQLAlchemy): site keys, conversations, every message with its mode,
sources and timings, feedback, handoffs, and the audit log. SQLite under the data dir by default
(WAL mode, a commit per write, so a killed server loses no stored turn; `secure_delete`, so a
deleted text is overwritten in the file); PostgreSQL by `database.url`.

A customer's question is stored (masked: `chatbot/privacy.py`) before it is answered, and the answer
when it is finished; an agent's reply (handoff) is a message with the role `agent`. Conversations
are deleted after `privacy.retention_days` (`purge`), and a visitor's or a conversation's data can
be exported and erased. The audit log is append-only and hash-chained: each row's hash covers the
row and the hash of the row before it, so `verify_audit` finds a row edited or deleted afterwards.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    and_,
    case,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    event,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, aliased, mapped_column, sessionmaker

from chatbot.errors import UserError


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class SiteKey(Base):
    __tablename__ = "site_keys"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    origins: Mapped[list] = mapped_column(JSON)
    created: Mapped[datetime] = mapped_column(default=_now)


class Conversation(Base):
    __tablename__ = "conversations"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    site_key: Mapped[str] = mapped_column(String(64), index=True)
    visitor: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), default="bot")  # bot | handoff
    created: Mapped[datetime] = mapped_column(default=_now, index=True)
    updated: Mapped[datetime] = mapped_column(default=_now)
    handed_off: Mapped[datetime | None] = mapped_column(default=None)


class Message(Base):
    __tablename__ = "messages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))  # user | assistant | agent
    content: Mapped[str] = mapped_column(Text)
    mode: Mapped[str | None] = mapped_column(String(16), default=None)  # faq | generate | abstain | refused
    lang: Mapped[str | None] = mapped_column(String(8), default=None)
    sources: Mapped[list | None] = mapped_column(JSON, default=None)
    timings: Mapped[dict | None] = mapped_column(JSON, default=None)
    created: Mapped[datetime] = mapped_column(default=_now)


class Feedback(Base):
    __tablename__ = "feedback"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), index=True)
    rating: Mapped[int] = mapped_column(Integer)  # +1 or -1
    comment: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[datetime] = mapped_column(default=_now)


class GapTopic(Base):
    """A knowledge-gap topic's identity across runs (`chatbot/gaps.py`): the centre of its questions'
    embeddings and when it was first seen; never the customers' text."""
    __tablename__ = "gap_topics"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lang: Mapped[str] = mapped_column(String(8))
    centroid: Mapped[list] = mapped_column(JSON)
    first_seen: Mapped[datetime] = mapped_column(default=_now)
    updated: Mapped[datetime] = mapped_column(default=_now)


class GapMember(Base):
    """Which gap topic a stored customer question belongs to, as of the last topics run
    (`gaps.gap_topics`): the topic's gap questions, and the other questions of the window as near
    its centre as its own are; the per-topic metrics count these (`Store.topic_metrics`)."""
    __tablename__ = "gap_members"
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), index=True)
    topic_id: Mapped[int] = mapped_column(Integer, index=True)


class GapDraft(Base):
    """A draft FAQ entry for a gap topic (`chatbot/gaps.py`), and its review: pending, approved
    (published in the knowledge document `gaps.APPROVED_DOCUMENT`) or dismissed, with the reason."""
    __tablename__ = "gap_drafts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    topic_id: Mapped[int] = mapped_column(Integer, index=True)
    lang: Mapped[str] = mapped_column(String(8))
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text, default="")
    cites: Mapped[list] = mapped_column(JSON, default=list)  # the conversations whose person's replies it was written from
    needs_source: Mapped[bool] = mapped_column(default=False)  # written by the LM from the nearest passages, or empty
    near_entry: Mapped[str] = mapped_column(String(300), default="")  # an existing FAQ entry it is as near as a match
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)  # pending | approved | dismissed
    reason: Mapped[str] = mapped_column(Text, default="")
    reviewer: Mapped[str] = mapped_column(String(200), default="")
    created: Mapped[datetime] = mapped_column(default=_now)
    updated: Mapped[datetime] = mapped_column(default=_now)


class StaffUser(Base):
    __tablename__ = "staff_users"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))  # owner | admin | agent | viewer (chatbot/staff.py)
    password_hash: Mapped[str] = mapped_column(String(200))  # argon2id
    created: Mapped[datetime] = mapped_column(default=_now)


class AuditEntry(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=_now, index=True)
    actor: Mapped[str] = mapped_column(String(200))  # a staff user, `cli:<user>`, `visitor:<id>`, `system` or `knowledge-folder`
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(300), default="")
    address: Mapped[str] = mapped_column(String(64), default="")  # masked: chatbot.privacy.mask_address
    detail: Mapped[dict] = mapped_column(JSON, default=dict)  # counts and names, never customer text
    prev: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    def digest(self) -> str:
        fields = [self.id, self.at.isoformat(), self.actor, self.action, self.target, self.address, self.detail, self.prev]
        return hashlib.sha256(json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


class AuditHead(Base):
    """One row, updated with every audit entry: the lock that keeps the chain a chain when two
    processes (the server and `chatbot ...`) append at once."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rows: Mapped[int] = mapped_column(Integer, default=0)


class SigningSecret(Base):
    """One row on a shared database: the key that signs visitor tokens when `security.secret_key` is
    not set, made once by whichever replica comes first, so that every replica accepts every token."""

    __tablename__ = "signing_secret"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[str] = mapped_column(String(128))


GENESIS = "0" * 64


def database_url(url: str, data_dir) -> str:
    """The configured URL, or the SQLite file under the data dir."""
    if url:
        return url
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{data_dir / 'kefu.db'}"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(connection, _record) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")  # durable when the process dies; fsync at checkpoints
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA secure_delete=ON")  # a deleted message is overwritten, not left in free pages
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


@contextmanager
def _schema_lock(engine: Engine) -> Iterator[None]:
    """One process at a time creates the schema: a PostgreSQL advisory lock, or for an SQLite file an
    exclusive `flock` on a file beside it."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _SCHEMA_LOCK_KEY})
        return
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


_SCHEMA_LOCK_KEY = 0x6B656675  # "kefu"


class Store:
    """Every conversation and its messages; thread-safe (a session per call)."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        with _schema_lock(self.engine):  # replicas starting together create the tables once
            Base.metadata.create_all(self.engine)
            with self._session() as s:
                if s.get(AuditHead, 1) is None:
                    s.add(AuditHead(id=1, rows=0))
                if self.engine.dialect.name != "sqlite" and s.get(SigningSecret, 1) is None:
                    s.add(SigningSecret(id=1, value=secrets.token_urlsafe(48)))

    def signing_secret(self) -> str | None:
        """The shared signing key of a server database (None on SQLite: the data dir keeps it)."""
        with self._session() as s:
            row = s.get(SigningSecret, 1)
            return row.value if row else None

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    # --- site keys -------------------------------------------------------------------------------

    def create_site_key(self, name: str, origins: list[str]) -> SiteKey:
        origins = [normalise_origin(o) for o in origins]
        if not origins:
            raise UserError("a site key needs at least one allowed origin, e.g. https://shop.example.com")
        site = SiteKey(key="sk_" + secrets.token_urlsafe(18), name=name, origins=origins)
        with self._session() as s:
            s.add(site)
        return site

    def site_keys(self) -> list[SiteKey]:
        with self._session() as s:
            return list(s.scalars(select(SiteKey).order_by(SiteKey.created)))

    def site_key(self, key: str) -> SiteKey | None:
        with self._session() as s:
            return s.get(SiteKey, key)

    def delete_site_key(self, key: str) -> bool:
        with self._session() as s:
            site = s.get(SiteKey, key)
            if site is not None:
                s.delete(site)
            return site is not None

    # --- conversations ---------------------------------------------------------------------------

    def create_conversation(self, site_key: str, visitor: str) -> Conversation:
        conversation = Conversation(site_key=site_key, visitor=visitor)
        with self._session() as s:
            s.add(conversation)
        return conversation

    def conversation(self, conversation_id: str) -> Conversation | None:
        with self._session() as s:
            return s.get(Conversation, conversation_id)

    def messages(self, conversation_id: str, after: int = 0) -> list[Message]:
        with self._session() as s:
            query = select(Message).where(Message.conversation_id == conversation_id, Message.id > after).order_by(Message.id)
            return list(s.scalars(query))

    def add_message(self, conversation_id: str, role: str, content: str, **fields: Any) -> Message:
        message = Message(conversation_id=conversation_id, role=role, content=content, **fields)
        with self._session() as s:
            s.add(message)
            conversation = s.get(Conversation, conversation_id)
            if conversation is not None:
                conversation.updated = _now()
        return message

    def set_status(self, conversation_id: str, status: str) -> Conversation:
        with self._session() as s:
            conversation = s.get(Conversation, conversation_id)
            if conversation is None:
                raise UserError(f"no conversation {conversation_id}")
            conversation.status = status
            conversation.updated = _now()
            if status == "handoff":
                conversation.handed_off = _now()
            return conversation

    def add_feedback(self, conversation_id: str, message_id: int, rating: int, comment: str = "") -> Feedback:
        with self._session() as s:
            message = s.get(Message, message_id)
            if message is None or message.conversation_id != conversation_id or message.role != "assistant":
                raise UserError("feedback needs the id of an answer in this conversation")
            # one rating per answer: a changed mind, or a reason given after a thumbs-down, updates it
            feedback = s.scalars(select(Feedback).where(Feedback.message_id == message_id)).first()
            if feedback is None:
                feedback = Feedback(conversation_id=conversation_id, message_id=message_id, rating=rating, comment=comment[:2000])
                s.add(feedback)
            else:
                feedback.rating, feedback.comment = rating, comment[:2000] or (feedback.comment if rating == feedback.rating else "")
        return feedback

    # --- the admin's views ---------------------------------------------------------------------------

    def list_conversations(self, only: str = "all", limit: int = 200) -> list[dict]:
        """Newest first, with counts; `only`: all | abstained | handoff | thumbs_down. One query."""
        first = (
            select(Message.content).where(Message.conversation_id == Conversation.id, Message.role == "user")
            .order_by(Message.id).limit(1).correlate(Conversation).scalar_subquery()
        )
        count = select(func.count(Message.id)).where(Message.conversation_id == Conversation.id).correlate(Conversation).scalar_subquery()
        query = select(Conversation, first, count).order_by(Conversation.updated.desc()).limit(limit)
        if only == "handoff":
            query = query.where(Conversation.status == "handoff")
        elif only == "abstained":
            query = query.where(Conversation.id.in_(select(Message.conversation_id).where(Message.mode == "abstain")))
        elif only == "thumbs_down":
            query = query.where(Conversation.id.in_(select(Feedback.conversation_id).where(Feedback.rating < 0)))
        with self._session() as s:
            return [
                {"id": c.id, "status": c.status, "updated": c.updated, "messages": n, "first": text or "", "site_key": c.site_key}
                for c, text, n in s.execute(query)
            ]

    def daily_counts(self, days: int = 30) -> list[dict]:
        """Per day: conversations started, answers given, abstains, handoffs."""
        since = _now() - timedelta(days=days)
        counts: dict[date, dict] = {}

        def bump(day: datetime, key: str) -> None:
            row = counts.setdefault(day.date(), {"day": day.date().isoformat(), "conversations": 0, "answered": 0, "abstained": 0, "handed off": 0})
            row[key] += 1

        with self._session() as s:
            for (created,) in s.execute(select(Conversation.created).where(Conversation.created >= since)):
                bump(created, "conversations")
            for created, mode in s.execute(select(Message.created, Message.mode).where(Message.created >= since, Message.role == "assistant")):
                bump(created, "abstained" if mode == "abstain" else "answered")
            for (handed,) in s.execute(select(Conversation.handed_off).where(Conversation.handed_off.is_not(None), Conversation.handed_off >= since)):
                bump(handed, "handed off")
        return [counts[d] for d in sorted(counts)]


    # --- knowledge gaps (chatbot/gaps.py) ----------------------------------------------------------

    def gap_messages(self, since: datetime) -> tuple[list[Message], dict[int, str]]:
        """Every message of the conversations with a message since `since`, by conversation, then
        id; and the thumbs-down their answers got: message id → the customer's reason."""
        with self._session() as s:
            recent = select(Message.conversation_id).where(Message.created >= since).distinct()
            messages = list(s.scalars(select(Message).where(Message.conversation_id.in_(recent)).order_by(Message.conversation_id, Message.id)))
            down = {m: c for m, c in s.execute(select(Feedback.message_id, Feedback.comment).where(Feedback.rating < 0, Feedback.conversation_id.in_(recent)))}
        return messages, down

    def gap_topics(self) -> list[dict]:
        with self._session() as s:
            return [{"id": t.id, "lang": t.lang, "centroid": t.centroid, "first_seen": t.first_seen} for t in s.scalars(select(GapTopic).order_by(GapTopic.id))]

    def save_gap_topics(self, topics: list[dict]) -> list[int]:
        """Store each topic's centre (`{id, lang, centroid, first_seen}`: id None for a new one);
        returns their ids, in order. Topics not given are kept: one may come back."""
        ids = []
        with self._session() as s:
            for t in topics:
                row = s.get(GapTopic, t["id"]) if t["id"] is not None else None
                if row is None:
                    row = GapTopic(lang=t["lang"], centroid=t["centroid"], first_seen=t["first_seen"])
                    s.add(row)
                    s.flush()
                else:
                    row.centroid, row.updated = t["centroid"], _now()
                ids.append(row.id)
        return ids

    def resolution_metrics(self, days: int = 30, now: datetime | None = None) -> dict:
        """Per day and in all, over the conversations started in the last `days` days (README,
        "Knowledge gaps"), each counted in SQL:
        - resolution rate: conversations answered (a curated or generated answer) with no handoff,
          no thumbs-down and no question asked again (the same words later in the conversation);
        - containment: conversations never handed to a person;
        - handoff rate; abstain rate and thumbs-down rate per answer given.
        The same per gap topic, and the time to close each: `topic_metrics`."""
        since = (now or _now()) - timedelta(days=days)
        day = func.date(Conversation.created)
        answered = select(Message.id).where(Message.conversation_id == Conversation.id, Message.mode.in_(("faq", "generate"))).exists()
        down = select(Feedback.id).where(Feedback.conversation_id == Conversation.id, Feedback.rating < 0).exists()
        first, again = aliased(Message), aliased(Message)
        repeat = (select(first.id).join(again, and_(again.conversation_id == first.conversation_id, again.id > first.id, again.role == "user",
                                                     again.content == first.content))
                  .where(first.conversation_id == Conversation.id, first.role == "user").exists())
        handed = Conversation.handed_off.is_not(None)
        per_conversation = (select(day, func.count(), func.sum(case((and_(answered, ~handed, ~down, ~repeat), 1), else_=0)),
                                   func.sum(case((handed, 1), else_=0)))
                            .where(Conversation.created >= since).group_by(day))
        message_day = func.date(Message.created)
        per_answer = (select(message_day, func.count(), func.sum(case((Message.mode == "abstain", 1), else_=0)))
                      .where(Message.role == "assistant", Message.mode.in_(("faq", "generate", "abstain")), Message.created >= since).group_by(message_day))
        feedback_day = func.date(Feedback.created)
        per_feedback = select(feedback_day, func.count()).where(Feedback.rating < 0, Feedback.created >= since).group_by(feedback_day)
        rows: dict[str, dict] = {}

        def row(d) -> dict:
            return rows.setdefault(str(d), {"day": str(d), "conversations": 0, "resolved": 0, "handed_off": 0, "answers": 0, "abstained": 0, "thumbs_down": 0})

        with self._session() as s:
            for d, n, resolved, handed_off in s.execute(per_conversation):
                row(d).update(conversations=n, resolved=int(resolved or 0), handed_off=int(handed_off or 0))
            for d, n, abstained in s.execute(per_answer):
                row(d).update(answers=n, abstained=int(abstained or 0))
            for d, n in s.execute(per_feedback):
                row(d).update(thumbs_down=n)
        days_rows = [_rates(rows[d]) for d in sorted(rows)]
        total = _rates({k: sum(r[k] for r in days_rows) for k in ("conversations", "resolved", "handed_off", "answers", "abstained", "thumbs_down")})
        return {"days": days_rows, "total": total}

    def save_gap_members(self, members: dict[int, tuple[str, int]], since: datetime) -> None:
        """The topic of each customer question asked since `since` (message id → (conversation
        id, topic id)); the window's earlier memberships are replaced, older ones kept."""
        with self._session() as s:
            window = select(Message.id).where(Message.created >= since)
            s.execute(delete(GapMember).where(GapMember.message_id.in_(window)))
            s.add_all(GapMember(message_id=m, conversation_id=c, topic_id=t) for m, (c, t) in members.items())

    def topic_metrics(self, days: int = 30, now: datetime | None = None) -> dict:
        """Per gap topic, per day and in all, over its questions asked in the last `days` days
        (`GapMember`), counted in SQL: questions, answered (the reply after it a curated or
        generated answer), resolved (answered, and no handoff after it in the conversation, no
        thumbs-down on that answer, not asked again in the same words), handed off, abstained,
        thumbs-down; and the time to close it: from the topic's first question to the first of its
        questions resolved after a draft of it was approved (None while none is)."""
        since = (now or _now()) - timedelta(days=days)
        q, reply, later, again = aliased(Message), aliased(Message), aliased(Message), aliased(Message)
        reply_id = (select(func.min(later.id)).where(later.conversation_id == q.conversation_id, later.id > q.id, later.role == "assistant")
                    .correlate(q).scalar_subquery())
        handed = select(later.id).where(later.conversation_id == q.conversation_id, later.id > q.id, later.mode == "handoff").correlate(q).exists()
        down = select(Feedback.id).where(Feedback.message_id == reply.id, Feedback.rating < 0).correlate(reply).exists()
        repeat = (select(again.id).where(again.conversation_id == q.conversation_id, again.id > q.id, again.role == "user", again.content == q.content)
                  .correlate(q).exists())
        answered = reply.mode.in_(("faq", "generate"))
        resolved = and_(answered, ~handed, ~down, ~repeat)
        day = func.date(q.created)

        def count(condition):
            return func.sum(case((condition, 1), else_=0))

        per_day = (select(GapMember.topic_id, day, func.count(), count(answered), count(resolved), count(handed), count(reply.mode == "abstain"), count(down))
                   .join(q, q.id == GapMember.message_id).outerjoin(reply, reply.id == reply_id)
                   .where(q.created >= since).group_by(GapMember.topic_id, day).order_by(GapMember.topic_id, day))
        approved = (select(GapDraft.topic_id, func.min(GapDraft.updated).label("at")).where(GapDraft.status == "approved")
                    .group_by(GapDraft.topic_id).subquery())
        first_resolved = (select(GapMember.topic_id, func.min(q.created)).join(q, q.id == GapMember.message_id).outerjoin(reply, reply.id == reply_id)
                          .join(approved, approved.c.topic_id == GapMember.topic_id).where(resolved, q.created >= approved.c.at)
                          .group_by(GapMember.topic_id))
        names = ("questions", "answered", "resolved", "handed_off", "abstained", "thumbs_down")
        topics: dict[int, dict] = {}
        with self._session() as s:
            for topic_id, d, *counts in s.execute(per_day):
                topics.setdefault(topic_id, {"topic": topic_id, "days": []})["days"].append({"day": str(d)} | dict(zip(names, (int(c or 0) for c in counts))))
            seen = {t.id: t.first_seen for t in s.scalars(select(GapTopic).where(GapTopic.id.in_(list(topics))))}
            approvals = dict(s.execute(select(approved.c.topic_id, approved.c.at)).all())
            answered_at = dict(s.execute(first_resolved).all())
        for topic_id, row in topics.items():
            total = {k: sum(d[k] for d in row["days"]) for k in names}
            first, at, fixed = seen.get(topic_id), approvals.get(topic_id), answered_at.get(topic_id)
            row |= {"total": total | _topic_rates(total), "first_seen": first.isoformat(timespec="seconds") if first else None,
                    "approved": at.isoformat(timespec="seconds") if at else None, "answered_since": fixed.isoformat(timespec="seconds") if fixed else None,
                    "days_to_close": round((fixed - first).total_seconds() / 86400, 1) if fixed and first else None}
            row["days"] = [d | _topic_rates(d) for d in row["days"]]
        return {"topics": [topics[t] for t in sorted(topics)]}

    def add_gap_draft(self, **fields: Any) -> GapDraft:
        draft = GapDraft(**fields)
        with self._session() as s:
            s.add(draft)
        return draft

    def gap_draft(self, draft_id: int) -> GapDraft:
        with self._session() as s:
            draft = s.get(GapDraft, draft_id)
        if draft is None:
            raise UserError(f"no draft {draft_id}; `chatbot gaps drafts` lists them")
        return draft

    def gap_drafts(self, status: str = "") -> list[GapDraft]:
        with self._session() as s:
            query = select(GapDraft).order_by(GapDraft.id)
            return list(s.scalars(query.where(GapDraft.status == status) if status else query))

    def review_gap_draft(self, draft_id: int, status: str, reviewer: str, reason: str = "", question: str | None = None, answer: str | None = None) -> GapDraft:
        """Approve or dismiss a draft (an approval may edit its question and answer)."""
        with self._session() as s:
            draft = s.get(GapDraft, draft_id)
            if draft is None:
                raise UserError(f"no draft {draft_id}; `chatbot gaps drafts` lists them")
            draft.status, draft.reviewer, draft.reason, draft.updated = status, reviewer, reason, _now()
            draft.question = question if question is not None else draft.question
            draft.answer = answer if answer is not None else draft.answer
            return draft

    # --- staff users ------------------------------------------------------------------------------------

    def add_user(self, name: str, role: str, password_hash: str) -> StaffUser:
        user = StaffUser(name=name, role=role, password_hash=password_hash)
        with self._session() as s:
            if s.get(StaffUser, name) is not None:
                raise UserError(f"there is already a user '{name}'; `chatbot user role` changes a role, `chatbot user password` a password")
            s.add(user)
        return user

    def user(self, name: str) -> StaffUser | None:
        with self._session() as s:
            return s.get(StaffUser, name)

    def users(self) -> list[StaffUser]:
        with self._session() as s:
            return list(s.scalars(select(StaffUser).order_by(StaffUser.name)))

    def update_user(self, name: str, **fields: str) -> StaffUser:
        with self._session() as s:
            user = s.get(StaffUser, name)
            if user is None:
                raise UserError(f"no user '{name}'; `chatbot user list` shows them")
            for key, value in fields.items():
                setattr(user, key, value)
            return user

    def remove_user(self, name: str) -> bool:
        with self._session() as s:
            user = s.get(StaffUser, name)
            if user is not None:
                s.delete(user)
            return user is not None

    # --- privacy: retention, export, erasure ------------------------------------------------------------

    def purge(self, retention_days: int, now: datetime | None = None, actor: str = "system") -> dict:
        """Delete the conversations not updated for `retention_days` (0: none), with their messages
        and feedback; safe to run again. Audited with the counts."""
        if retention_days <= 0:
            return {"conversations": 0, "messages": 0, "feedback": 0}
        cutoff = (now or _now()) - timedelta(days=retention_days)
        old = select(Conversation.id).where(Conversation.updated < cutoff)
        counts = self._delete_conversations(old)
        self.audit(actor, "purge", f"older than {retention_days} days", detail=counts)
        return counts

    def export(self, *, site_key: str = "", visitor: str = "", conversation_id: str = "") -> dict:
        """Every conversation of a visitor (of a site key) or one conversation, with its messages and
        feedback, as JSON-ready data."""
        with self._session() as s:
            conversations = list(s.scalars(self._which(site_key, visitor, conversation_id).order_by(Conversation.created)))
            ids = [c.id for c in conversations]
            messages = list(s.scalars(select(Message).where(Message.conversation_id.in_(ids)).order_by(Message.id)))
            feedback = list(s.scalars(select(Feedback).where(Feedback.conversation_id.in_(ids)).order_by(Feedback.id)))
        return {
            "exported": _now().isoformat() + "Z",
            "conversations": [
                {
                    "id": c.id, "site_key": c.site_key, "visitor": c.visitor, "status": c.status,
                    "created": c.created.isoformat() + "Z", "updated": c.updated.isoformat() + "Z",
                    "messages": [
                        {"id": m.id, "role": m.role, "content": m.content, "mode": m.mode, "created": m.created.isoformat() + "Z",
                         "feedback": [{"rating": f.rating, "comment": f.comment} for f in feedback if f.message_id == m.id]}
                        for m in messages if m.conversation_id == c.id
                    ],
                }
                for c in conversations
            ],
        }

    def erase(self, *, site_key: str = "", visitor: str = "", conversation_id: str = "", actor: str = "cli", address: str = "") -> dict:
        """Delete every conversation of a visitor (of a site key), or one conversation, and all it
        holds; the audit row keeps who asked and the counts, none of the content."""
        counts = self._delete_conversations(select(Conversation.id).where(self._which(site_key, visitor, conversation_id).whereclause))
        target = f"conversation {conversation_id}" if conversation_id else f"visitor {visitor}" + (f" of {site_key}" if site_key else "")
        self.audit(actor, "erase", target, address, counts)
        return counts

    @staticmethod
    def _which(site_key: str, visitor: str, conversation_id: str):
        if conversation_id:
            return select(Conversation).where(Conversation.id == conversation_id)
        if not visitor:
            raise UserError("name a visitor or a conversation")
        query = select(Conversation).where(Conversation.visitor == visitor)
        return query.where(Conversation.site_key == site_key) if site_key else query

    def _delete_conversations(self, ids) -> dict:
        with self._session() as s:
            chosen = list(s.scalars(ids))
            counts = {
                "conversations": len(chosen),
                "messages": s.scalar(select(func.count(Message.id)).where(Message.conversation_id.in_(chosen))) or 0,
                "feedback": s.scalar(select(func.count(Feedback.id)).where(Feedback.conversation_id.in_(chosen))) or 0,
            }
            for table in (Feedback, GapMember, Message):
                s.execute(delete(table).where(table.conversation_id.in_(chosen)))
            s.execute(delete(Conversation).where(Conversation.id.in_(chosen)))
        if self.engine.dialect.name == "sqlite":  # the write-ahead log held the deleted pages too
            with self.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return counts

    # --- the audit log ---------------------------------------------------------------------------------

    def audit(self, actor: str, action: str, target: str = "", address: str = "", detail: dict | None = None) -> AuditEntry:
        """Append a row to the audit log, chained to the one before it."""
        with self._session() as s:
            s.execute(update(AuditHead).where(AuditHead.id == 1).values(rows=AuditHead.rows + 1))  # taken before reading the last hash
            last = s.scalar(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1))
            entry = AuditEntry(at=_now(), actor=actor, action=action, target=target[:300], address=address, detail=detail or {}, prev=last.hash if last else GENESIS, hash="")
            s.add(entry)
            s.flush()  # its id
            entry.hash = entry.digest()
        return entry

    def audit_log(self, limit: int = 500, action: str = "", actor: str = "") -> list[AuditEntry]:
        """Newest first, optionally only one action or actor."""
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if action:
            query = query.where(AuditEntry.action == action)
        if actor:
            query = query.where(AuditEntry.actor == actor)
        with self._session() as s:
            return list(s.scalars(query))

    def verify_audit(self) -> tuple[int, int | None]:
        """(rows checked, the id of the first row whose hash or link does not hold, or None)."""
        prev, n = GENESIS, 0
        with self._session() as s:
            for entry in s.scalars(select(AuditEntry).order_by(AuditEntry.id)).yield_per(1000):
                n += 1
                if entry.prev != prev or entry.hash != entry.digest():
                    return n, entry.id
                prev = entry.hash
            head = s.get(AuditHead, 1)
        if head is not None and head.rows != n:  # a row deleted from the end
            return n, -1
        return n, None


def _rates(counts: dict) -> dict:
    """`counts` with the rates of `Store.resolution_metrics` (None where there is nothing to divide by)."""
    def share(a: int, b: int) -> float | None:
        return round(a / b, 4) if b else None

    conversations, answers = counts["conversations"], counts["answers"]
    return counts | {"resolution_rate": share(counts["resolved"], conversations), "containment": share(conversations - counts["handed_off"], conversations),
                     "handoff_rate": share(counts["handed_off"], conversations), "abstain_rate": share(counts["abstained"], answers),
                     "thumbs_down_rate": share(counts["thumbs_down"], answers)}


def _topic_rates(counts: dict) -> dict:
    """The rates of `Store.topic_metrics`, per question of the topic."""
    n = counts["questions"]
    return {name: round(counts[k] / n, 4) if n else None for name, k in (("resolution_rate", "resolved"), ("handoff_rate", "handed_off"), ("abstain_rate", "abstained"))}


def normalise_origin(origin: str) -> str:
    """`https://Shop.example.com/` -> `https://shop.example.com`; an origin is scheme://host[:port]."""
    from urllib.parse import urlsplit

    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise UserError(f"'{origin}' is not an origin; write it as scheme://host[:port], e.g. https://shop.example.com")
    return f"{parts.scheme}://{parts.netloc.lower()}"
