"""Console sessions: a random id in an HttpOnly cookie, the bearer token kept server-side.

The cookie holds only a random session id; the token it stands for stays in this
process's memory and is authenticated again on every request, so revoking a principal
or its token ends its console session at once. Each session has its own CSRF token,
which every POST form carries and the server compares in constant time. Pure: no I/O.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass

SESSION_COOKIE = "domicile_console"
LOGIN_COOKIE = "domicile_console_login"  # double-submit CSRF token of the login form
SESSION_SECONDS = 8 * 3600
MAX_SESSIONS = 10_000


@dataclass(frozen=True)
class Session:
    """One logged-in console session."""

    id: str
    token: str
    csrf: str
    expires: float


def new_secret() -> str:
    """A fresh random value for a session id or a CSRF token."""
    return secrets.token_urlsafe(32)


def is_same_secret(given: str | None, expected: str | None) -> bool:
    """True when both are present and equal (compared in constant time)."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


class SessionStore:
    """Open sessions of one console process."""

    def __init__(self, seconds: float = SESSION_SECONDS) -> None:
        self.seconds = seconds
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, token: str) -> Session:
        """Start a session for an authenticated token."""
        now = time.monotonic()
        session = Session(new_secret(), token, new_secret(), now + self.seconds)
        with self._lock:
            if len(self._sessions) >= MAX_SESSIONS:
                self._drop_expired(now)
                if len(self._sessions) >= MAX_SESSIONS:  # still full: the oldest goes
                    del self._sessions[next(iter(self._sessions))]
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id, if any."""
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and session.expires < time.monotonic():
                del self._sessions[session_id]
                return None
        return session

    def close(self, session_id: str | None) -> None:
        """End a session (logout)."""
        with self._lock:
            self._sessions.pop(session_id or "", None)

    def _drop_expired(self, now: float) -> None:
        for sid in [s.id for s in self._sessions.values() if s.expires < now]:
            del self._sessions[sid]
