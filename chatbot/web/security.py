"""Visitor tokens and rate limits for the public API.

A token is `<payload>.<signature>`: the payload names the site key, the visitor and the expiry;
the signature is HMAC-SHA256 with the server's secret (`security.secret_key` from the environment,
else a random key kept in `<data_dir>/secret_key`, readable by its owner only). A token is valid
only for its site key, until it expires, and only when unaltered.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import secrets
import logging
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


class TokenError(Exception):
    """A token that is missing, altered, expired or for another site."""


@dataclass(frozen=True)
class Visitor:
    site_key: str
    visitor: str
    expires: int


def load_secret(configured: str, data_dir: Path, shared: str | None = None) -> bytes:
    """The signing secret: configured; else the shared database's (`Store.signing_secret`: every
    replica the same); else one generated once and kept in the data dir (one machine, SQLite)."""
    if configured:
        return configured.encode()
    if shared:
        return shared.encode()
    path = data_dir / "secret_key"
    if not path.is_file():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    return path.read_text().strip().encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Tokens:
    def __init__(self, secret: bytes, ttl_s: int) -> None:
        self._secret = secret
        self.ttl_s = ttl_s

    def issue(self, site_key: str, visitor: str, now: float | None = None) -> str:
        payload = _b64(json.dumps({"s": site_key, "v": visitor, "e": int((now or time.time()) + self.ttl_s)}, separators=(",", ":")).encode())
        return f"{payload}.{self._sign(payload)}"

    def verify(self, token: str, now: float | None = None) -> Visitor:
        try:
            payload, signature = token.split(".")
        except ValueError as e:
            raise TokenError("malformed token") from e
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise TokenError("the token's signature does not match")
        try:
            data = json.loads(_unb64(payload))
            visitor = Visitor(str(data["s"]), str(data["v"]), int(data["e"]))
        except (ValueError, KeyError, TypeError) as e:
            raise TokenError("malformed token") from e
        if visitor.expires < (now or time.time()):
            raise TokenError("the token has expired")
        return visitor

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())


def _limits_storage(uri: str):
    """The `limits` store at `uri`: in memory, each limiter's own (as each app's, in tests); a
    server's one connection pool, shared by every limiter of the process (kept apart by name)."""
    from limits.storage import storage_from_string

    return storage_from_string(uri, wrap_exceptions=True) if uri.startswith("memory://") else _shared_storage(uri)


@functools.lru_cache(maxsize=8)
def _shared_storage(uri: str):
    from limits.storage import storage_from_string

    # A store that does not answer within a second is passed over rather than kept waiting on.
    return storage_from_string(uri, wrap_exceptions=True, socket_connect_timeout=1, socket_timeout=1)


class RateLimiter:
    """At most `per_minute` events per key in any 60-second window (a moving window), counted by
    the `limits` library in `storage`: `memory://` counts in this process; `redis://host:port/db`
    counts in Redis, atomically, so that every replica of the server shares the count. `name`
    keeps limiters apart in a shared store; a key (a client address, a visitor) is stored only as a
    hash of it. Where the store cannot be reached, the event is let through and the failure
    logged: a Redis outage must not refuse every customer."""

    def __init__(self, per_minute: int, storage: str = "memory://", name: str = "events") -> None:
        from limits import RateLimitItemPerMinute
        from limits.strategies import MovingWindowRateLimiter

        self.per_minute, self.name = per_minute, name
        self._item = RateLimitItemPerMinute(per_minute)
        self._limiter = MovingWindowRateLimiter(_limits_storage(storage))

    def check(self, key: str) -> float:
        """0 when the event is allowed (and counted), else the seconds to wait."""
        from limits.errors import StorageError

        hashed = hashlib.sha256(key.encode()).hexdigest()[:32]
        try:
            if self._limiter.hit(self._item, self.name, hashed):
                return 0.0
            reset = self._limiter.get_window_stats(self._item, self.name, hashed).reset_time
        except StorageError as e:
            log.warning("rate limit %s not counted: its store failed (%s); check security.limits_storage", self.name, type(e.__cause__ or e).__name__)
            return 0.0
        return max(0.1, reset - time.time())


class BodyLimit:
    """ASGI middleware: a request under `prefix` with a body over `limit` bytes gets 413 with a JSON
    `{"error": ...}` before the endpoint sees it: at once when its Content-Length says so, else as
    soon as the chunks received pass the limit. The body (small: the API takes messages) is read
    here and handed on whole, so nothing of a refused request reaches the endpoint or the store."""

    def __init__(self, app, limit: int, prefix: str = "/api/", hint: str = "") -> None:
        self.app, self.limit, self.prefix, self.hint = app, limit, prefix, hint

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        chunks, received = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away mid-body: a reply nobody reads, not an error
                await self._refuse(send, 400, "the request body did not arrive whole; send it again")
                return
            received += len(message.get("body", b""))
            if received > self.limit:
                await self._refuse(send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        handed = False

        async def replay():
            nonlocal handed
            if not handed:
                handed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # then the real channel: a streamed answer waits on it for a disconnect

        await self.app(scope, replay, send)

    async def _refuse(self, send, status: int = 413, text: str = "") -> None:
        text = text or f"the request body is over the limit of {self.limit // 1024} KB (security.max_body_kb); send a smaller request{self.hint}"
        body = json.dumps({"error": text}).encode()
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class SignInGuard:
    """ASGI middleware in front of the admin page's sign-in (`POST <path>`): a client address or an
    account locked out by `LoginGuard` gets 429 with Retry-After before the password is checked;
    each outcome is counted, and written to the audit log (`audit(actor, action, address)`) with
    the address masked."""

    def __init__(self, app, path: str, guard, audit) -> None:
        self.app, self.path, self.guard, self.audit = app, path, guard, audit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        import anyio
        from starlette.requests import Request

        from chatbot.privacy import mask_address

        body, more = b"", True
        while more and len(body) <= 16_384:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)

        async def replay():
            return {"type": "http.request", "body": body, "more_body": False}

        try:  # the sign-in page sends multipart form data, a script may send urlencoded
            name = str((await Request(scope, replay).form()).get("username") or "").strip()[:64]
        except Exception:  # not a form: Gradio answers it
            name = ""
        address = (scope.get("client") or ("?", 0))[0]
        keys = (f"account:{name}", f"address:{address}")
        wait = self.guard.wait(*keys)
        if wait:
            await anyio.to_thread.run_sync(self.audit, name or "?", "sign-in-refused", mask_address(address))
            text = json.dumps({"detail": f"Too many failed sign-ins: try again in {wait:.0f} s."}).encode()
            headers = [(b"content-type", b"application/json"), (b"retry-after", str(max(1, round(wait))).encode()), (b"content-length", str(len(text)).encode())]
            await send({"type": "http.response.start", "status": 429, "headers": headers})
            await send({"type": "http.response.body", "body": text})
            return
        status = []

        async def watch(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, replay, watch)
        if status and status[0] == 200:
            self.guard.succeeded(*keys)
            await anyio.to_thread.run_sync(self.audit, name, "sign-in", mask_address(address))
        elif status and status[0] in (400, 401):
            self.guard.failed(*keys)
            await anyio.to_thread.run_sync(self.audit, name or "?", "sign-in-failed", mask_address(address))
