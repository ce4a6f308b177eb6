"""The public API the widget (and any website) uses, under `/api`.

    POST /api/session                         {site_key, visitor?} -> {token, visitor, expires_in}
    POST /api/conversations                   -> {id, status}
    GET  /api/conversations/{id}?after=N      -> {id, status, messages: [...]}
    POST /api/conversations/{id}/messages     {content} -> Server-Sent Events: token*, then done
                                              (or handoff / queued while a person has the conversation)
    POST /api/conversations/{id}/feedback     {message_id, rating: up|down, comment?}
    POST /api/conversations/{id}/handoff      -> {status: handoff}
    GET  /api/me/export                       -> the visitor's conversations as JSON (a download)
    DELETE /api/me                            -> {erased: {conversations, messages, feedback}}

Every call must come from an origin on its site key's allow-list (the `Origin` header, checked on
the server: 403 otherwise); all but `/api/session` carry the visitor's token (`Authorization:
Bearer ...`), valid for one site key and visitor until it expires. Messages are rate-limited per
visitor and per site key (429 with `Retry-After`). Errors are JSON: `{"error": "what to do"}`.
A message's personal data is masked before it is stored or answered (`DialogueManager.check`).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterator
from typing import Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from chatbot.dialogue import DialogueManager
from chatbot.errors import UserError
from chatbot.handoff import asks_for_a_person, hand_off
from chatbot.language import detect_language
from chatbot.privacy import mask_address
from chatbot.store import Conversation, Store
from chatbot.web.security import RateLimiter, TokenError, Tokens, Visitor

_VISITOR = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class SessionRequest(BaseModel):
    site_key: str = Field(max_length=64)
    visitor: str | None = Field(None, max_length=64)


class MessageRequest(BaseModel):
    content: str = Field(max_length=100_000)


MAX_ID = 2**63 - 1  # the database's integers: a larger id is a 422, not an overflow


class FeedbackRequest(BaseModel):
    message_id: int = Field(ge=1, le=MAX_ID)
    rating: Literal["up", "down"]
    comment: str = Field("", max_length=2000)


def add_api(app: FastAPI, manager: DialogueManager, store: Store, tokens: Tokens, before_turn: Callable[[], object] = lambda: None) -> None:
    """Mount the API, its CORS handling and its error replies on `app`; `before_turn` runs before
    each answer (moving onto a new knowledge version)."""
    settings = manager.settings
    security = settings.security
    per_visitor = RateLimiter(security.visitor_per_minute, security.limits_storage, "api-visitor")
    per_site = RateLimiter(security.site_per_minute, security.limits_storage, "api-site")
    per_address = RateLimiter(security.sessions_per_minute, security.limits_storage, "api-sessions")
    router = APIRouter(prefix="/api")

    def allowed_origins(site_key: str) -> set[str]:
        site = store.site_key(site_key)
        return set(site.origins) if site else set()

    def any_site_allows(origin: str) -> bool:
        return any(origin in site.origins for site in store.site_keys())

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse({"error": error.message}, status_code=error.status, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        # Said without echoing the input: a lone UTF-16 surrogate in it cannot be written as JSON.
        problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:] or e['loc']))}: {e['msg']}" for e in error.errors())
        return JSONResponse({"error": f"the request is not valid ({problems}); send it as the API describes (/openapi.json)"}, status_code=422)

    @app.middleware("http")
    async def cors(request: Request, call_next):
        if not request.url.path.startswith("/api/"):
            return await call_next(request)
        origin = request.headers.get("origin", "")
        allowed = bool(origin) and any_site_allows(origin)
        if request.method == "OPTIONS":
            response = Response(status_code=204 if allowed else 403)
        elif not allowed:
            return JSONResponse({"error": _origin_refusal(origin)}, status_code=403)
        else:
            response = await call_next(request)
        if allowed:
            response.headers.update({
                "Access-Control-Allow-Origin": origin, "Vary": "Origin", "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
                "Access-Control-Allow-Headers": "Authorization, Content-Type", "Access-Control-Max-Age": "600",
            })
        return response

    def visitor(request: Request) -> Visitor:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer "):
            raise ApiError(401, "no visitor token: get one from POST /api/session and send it as 'Authorization: Bearer <token>'")
        try:
            who = tokens.verify(header[7:].strip())
        except TokenError as e:
            raise ApiError(401, f"{e}; get a new token from POST /api/session") from e
        origin = request.headers.get("origin", "")
        if origin not in allowed_origins(who.site_key):
            raise ApiError(403, _origin_refusal(origin))
        return who

    def own(conversation_id: str, who: Visitor) -> Conversation:
        conversation = store.conversation(conversation_id)
        if conversation is None or conversation.visitor != who.visitor or conversation.site_key != who.site_key:
            raise ApiError(404, "no such conversation for this visitor; start one with POST /api/conversations")
        return conversation

    @router.post("/session")
    def session(body: SessionRequest, request: Request) -> dict:
        """A visitor token for a site key, from an origin on its allow-list."""
        origin = request.headers.get("origin", "")
        if store.site_key(body.site_key) is None:
            raise ApiError(403, "unknown site key; copy it from the admin page (Site keys)")
        if origin not in allowed_origins(body.site_key):
            raise ApiError(403, _origin_refusal(origin))
        address = request.client.host if request.client else "?"
        _limit(per_address, address, "new visitor sessions from this address")
        name = body.visitor if body.visitor and _VISITOR.match(body.visitor) else secrets.token_urlsafe(16)
        return {"token": tokens.issue(body.site_key, name), "visitor": name, "expires_in": tokens.ttl_s}

    @router.post("/conversations")
    def create_conversation(who: Visitor = Depends(visitor)) -> dict:  # noqa: B008
        conversation = store.create_conversation(who.site_key, who.visitor)
        return {"id": conversation.id, "status": conversation.status}

    @router.get("/conversations/{conversation_id}")
    def get_conversation(conversation_id: str, after: int = Query(0, ge=0, le=MAX_ID), who: Visitor = Depends(visitor)) -> dict:  # noqa: B008
        conversation = own(conversation_id, who)
        return {"id": conversation.id, "status": conversation.status, "messages": [_message(m) for m in store.messages(conversation.id, after)]}

    @router.post("/conversations/{conversation_id}/messages")
    def send_message(conversation_id: str, body: MessageRequest, who: Visitor = Depends(visitor)) -> StreamingResponse:  # noqa: B008
        conversation = own(conversation_id, who)
        _limit(per_visitor, who.visitor, "messages from you")
        _limit(per_site, who.site_key, "messages to this website's assistant")
        history = _history(store, conversation.id)
        try:  # a customer handed off at the turn limit can still write to the person
            content = manager.check(body.content, [] if conversation.status == "handoff" else history)
        except UserError as e:
            raise ApiError(e.status, str(e)) from e
        lang = detect_language(content)
        question = store.add_message(conversation.id, "user", content, lang=lang)
        if conversation.status == "handoff":
            return _sse([("queued", {"status": "handoff", "message_id": question.id})])
        if asks_for_a_person(content):
            return _sse(_hand_off(conversation, lang, question.id))
        return StreamingResponse(_answer(conversation.id, body.content, history, question.id), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    def _answer(conversation_id: str, message: str, history: list[dict], question_id: int) -> Iterator[str]:
        try:
            before_turn()
            reply = manager.respond(message, history)  # the text as sent: respond masks it as check did
        except UserError as e:
            stored = store.add_message(conversation_id, "assistant", str(e), mode="refused")
            yield _event("token", {"text": str(e)})
            yield _event("done", {"message_id": stored.id, "question_id": question_id, "mode": "refused", "sources": []})
            return
        sources = [s.as_dict() for s in reply.sources]
        complete = False
        try:
            for piece in reply:
                yield _event("token", {"text": piece})
            complete = True
        finally:  # stored even when the reader went away mid-answer (what it was sent, marked cut)
            text = reply.text.strip() if complete else reply.text.strip() + " …"
            stored = store.add_message(conversation_id, "assistant", text, mode=reply.mode, lang=reply.lang, sources=sources, timings=reply.timings)
        yield _event("done", {"message_id": stored.id, "question_id": question_id, "mode": reply.mode, "sources": sources, "offer_handoff": reply.mode == "abstain"})

    def _hand_off(conversation: Conversation, lang: str, question_id: int | None = None) -> list[tuple[str, dict]]:
        notice = hand_off(store, manager.prompts, settings, conversation, lang)
        return [("token", {"text": notice.content}), ("done", {"message_id": notice.id, "question_id": question_id, "mode": "handoff", "sources": [], "status": "handoff"})]

    @router.post("/conversations/{conversation_id}/handoff")
    def handoff(conversation_id: str, who: Visitor = Depends(visitor)) -> dict:  # noqa: B008
        conversation = own(conversation_id, who)
        if conversation.status != "handoff":
            last = [m for m in store.messages(conversation.id) if m.role == "user"]
            _hand_off(conversation, detect_language(last[-1].content) if last else "en")
        return {"status": "handoff"}

    @router.post("/conversations/{conversation_id}/feedback")
    def feedback(conversation_id: str, body: FeedbackRequest, who: Visitor = Depends(visitor)) -> dict:  # noqa: B008
        conversation = own(conversation_id, who)
        try:
            store.add_feedback(conversation.id, body.message_id, 1 if body.rating == "up" else -1, manager.masker.mask(body.comment))
        except UserError as e:
            raise ApiError(422, str(e)) from e
        return {"ok": True}

    @router.get("/me/export")
    def export_me(request: Request, who: Visitor = Depends(visitor)) -> JSONResponse:  # noqa: B008
        """Everything stored of this visitor on this site key, as a JSON download."""
        data = store.export(site_key=who.site_key, visitor=who.visitor)
        store.audit(f"visitor:{who.visitor}", "export", f"visitor {who.visitor} of {who.site_key}", _address(request), {"conversations": len(data["conversations"])})
        return JSONResponse(data, headers={"Content-Disposition": 'attachment; filename="my-chat.json"'})

    @router.delete("/me")
    def erase_me(request: Request, who: Visitor = Depends(visitor)) -> dict:  # noqa: B008
        """Erase every conversation of this visitor on this site key; the audit row keeps the counts only."""
        return {"erased": store.erase(site_key=who.site_key, visitor=who.visitor, actor=f"visitor:{who.visitor}", address=_address(request))}

    app.include_router(router)


def _address(request: Request) -> str:
    return mask_address(request.client.host if request.client else "")


def _origin_refusal(origin: str) -> str:
    shown = origin or "no Origin header"
    return f"origin not allowed ({shown}); an admin must add this website's origin to its site key"


def _limit(limiter: RateLimiter, key: str, what: str) -> None:
    wait = limiter.check(key)
    if wait:
        raise ApiError(429, f"too many {what}; try again in {wait:.0f} s", {"Retry-After": str(max(1, round(wait)))})


def _history(store: Store, conversation_id: str) -> list[dict]:
    """The conversation so far as chat messages (an agent's replies count as the assistant's)."""
    return [
        {"role": "user" if m.role == "user" else "assistant", "content": m.content}
        for m in store.messages(conversation_id)
        if m.mode not in ("refused", "handoff")
    ]


def _message(m) -> dict:
    return {"id": m.id, "role": m.role, "content": m.content, "mode": m.mode, "sources": m.sources or [], "created": m.created.isoformat() + "Z"}


def _event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _sse(events: list[tuple[str, dict]]) -> StreamingResponse:
    return StreamingResponse(iter([_event(n, d) for n, d in events]), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
