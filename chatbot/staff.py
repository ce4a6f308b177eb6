"""Staff accounts, their roles, and signing in.

Roles, each allowed what the one below it is, and more:

    viewer  reads conversations, the knowledge base and the counts
    agent   also answers handed-off customers and hands conversations back to the bot
    admin   also manages the knowledge base and the site keys, exports and erases customers' data,
            and reads the audit log
    owner   also manages staff users

Passwords are hashed with argon2id (`argon2-cffi`). `admin.password` (CHATBOT_ADMIN_PASSWORD) stays
a way in: it signs in `admin.user` as an owner, for a first start and for when every owner is locked
out; `chatbot user add` makes the named accounts.

Signing in is throttled per account and per client address: after `FREE_TRIES` failures in a row,
each further failure locks that account (or address) out for twice as long as the one before, from
`FIRST_LOCK_S` up to `LONGEST_LOCK_S`. A success clears the account's count and the address's.
The counts live in this process (`LoginGuard`), or in Redis where `security.limits_storage` names it
(`SharedLoginGuard`), so that replicas behind a load balancer lock out together.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from chatbot.errors import UserError

log = logging.getLogger(__name__)

ROLES = ("viewer", "agent", "admin", "owner")  # each has every permission of those before it
PERMISSIONS = {
    "read": "viewer",  # conversations, documents, counts
    "reply": "agent",  # answer a handed-off customer, hand back to the bot
    "knowledge": "admin",  # add, remove, rebuild documents
    "site_keys": "admin",
    "customer_data": "admin",  # export and erase a conversation or a visitor
    "audit": "admin",  # read the audit log
    "users": "owner",  # add, change and remove staff users
}
FREE_TRIES = 5
FIRST_LOCK_S = 30.0
LONGEST_LOCK_S = 3600.0
MIN_PASSWORD = 12

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("a password nobody has")  # an unknown name costs the same time as a known one


def allowed(role: str | None, permission: str) -> bool:
    return role in ROLES and ROLES.index(role) >= ROLES.index(PERMISSIONS[permission])


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"a password needs at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"no role '{role}'; allowed: {', '.join(ROLES)}")
    return role


class Accounts:
    """Who may sign in, and with which role: the store's staff users, and `admin.user` with
    `admin.password` as an owner when that password is set."""

    def __init__(self, store, admin_user: str = "admin", admin_password: str = "") -> None:
        self.store, self.admin_user, self.admin_password = store, admin_user, admin_password

    def any(self) -> bool:
        return bool(self.admin_password) or bool(self.store.users())

    def verify(self, name: str, password: str) -> bool:
        user = self.store.user(name)
        if user is None:
            try:
                _hasher.verify(_DUMMY_HASH, password)
            except VerificationError:
                pass
            return bool(self.admin_password) and name == self.admin_user and hmac.compare_digest(password.encode(), self.admin_password.encode())
        try:
            return _hasher.verify(user.password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def role(self, name: str | None) -> str | None:
        if not name:
            return None
        user = self.store.user(name)
        if user is not None:
            return user.role
        return "owner" if self.admin_password and name == self.admin_user else None


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0
    lock_s: float = field(default=0.0)


class LoginGuard:
    """Failed sign-ins counted per key (an account, an address); a lock-out that doubles."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._failures: dict[str, _Failures] = {}
        self._lock = threading.Lock()

    def wait(self, *keys: str) -> float:
        """Seconds until every key may try again (0: now)."""
        now = self._clock()
        with self._lock:
            return max([0.0] + [f.locked_until - now for k in keys if (f := self._failures.get(k)) and f.locked_until > now])

    def failed(self, *keys: str) -> None:
        now = self._clock()
        with self._lock:
            for key in keys:
                f = self._failures.setdefault(key, _Failures())
                f.count += 1
                if f.count >= FREE_TRIES:
                    f.lock_s = min(LONGEST_LOCK_S, f.lock_s * 2 if f.lock_s else FIRST_LOCK_S)
                    f.locked_until = now + f.lock_s
            if len(self._failures) > 100_000:  # forget keys whose lock-out has passed
                for stale in [k for k, f in self._failures.items() if f.locked_until < now - LONGEST_LOCK_S]:
                    del self._failures[stale]

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)


# One failure, atomically: count it; from the FREE_TRIES-th on, lock out for twice the last lock-out
# (FIRST_LOCK_S first, LONGEST_LOCK_S at most), timed by the Redis server's own clock.
_FAILED = """
local count = redis.call('HINCRBY', KEYS[1], 'count', 1)
if count >= tonumber(ARGV[1]) then
  local lock = tonumber(redis.call('HGET', KEYS[1], 'lock_s') or '0')
  if lock == 0 then lock = tonumber(ARGV[2]) else lock = math.min(tonumber(ARGV[3]), lock * 2) end
  local now = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'lock_s', lock, 'locked_until', tostring(now[1] + now[2] / 1e6 + lock))
end
redis.call('EXPIRE', KEYS[1], math.floor(2 * tonumber(ARGV[3])))
return count
"""


class SharedLoginGuard:
    """`LoginGuard`'s counts in Redis (`redis://host:port/db`), shared by every replica; a key (an
    account, an address) is stored only as a hash of it. Where Redis cannot be reached, this
    process's own `LoginGuard` counts instead, and the failure is logged."""

    def __init__(self, uri: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(uri, socket_connect_timeout=1, socket_timeout=1)
        self._failed = self._redis.register_script(_FAILED)
        self._local = LoginGuard()

    @staticmethod
    def _key(key: str) -> str:
        return "kefu:sign-in:" + hashlib.sha256(key.encode()).hexdigest()[:32]

    def _shared(self, what: str, run, fallback):
        import redis

        try:
            return run()
        except redis.RedisError as e:
            log.warning("sign-in lock-outs counted in this process only: %s in Redis failed (%s); check security.limits_storage", what, type(e).__name__)
            return fallback()

    def wait(self, *keys: str) -> float:
        def shared() -> float:
            seconds, micros = self._redis.time()
            until = [float(v) for k in keys if (v := self._redis.hget(self._key(k), "locked_until"))]
            return max([0.0] + [u - (seconds + micros / 1e6) for u in until])

        return max(self._shared("reading", shared, lambda: 0.0), self._local.wait(*keys))

    def failed(self, *keys: str) -> None:
        def shared() -> None:
            for key in keys:
                self._failed(keys=[self._key(key)], args=[FREE_TRIES, FIRST_LOCK_S, LONGEST_LOCK_S])

        self._shared("counting", shared, lambda: self._local.failed(*keys))

    def succeeded(self, *keys: str) -> None:
        self._shared("clearing", lambda: self._redis.delete(*[self._key(k) for k in keys]), lambda: None)
        self._local.succeeded(*keys)


def login_guard(limits_storage: str) -> LoginGuard | SharedLoginGuard:
    """The sign-in guard for `security.limits_storage`: in this process for `memory://`, else in Redis."""
    return LoginGuard() if limits_storage.startswith("memory://") else SharedLoginGuard(limits_storage)
