"""Per-input state in one sqlite file in splunkd's checkpoint directory.

What it keeps: the checkpoint (last written log_id and its date), the users
the add-on knows (an event was written for them, or their flag is known to
be true), the flag writes still to do, the start date of a `start_from = now`
input, and the cached Management API token.

Why sqlite: one transaction per page commits the checkpoint together with
what the page taught us, so a crash at any instant leaves either the state
before the page or the state after it; and "which of these 100 users do we
know" is one indexed query, however many users are stored. The file (and
its write-ahead log) is 0600 because it holds the access token.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional, Protocol

try:
    import sqlite3
except ImportError:  # pragma: no cover - depends on the interpreter
    sqlite3 = None  # type: ignore[assignment]

SCHEMA_VERSION = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS known_users (user_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending_flags (
    user_id TEXT PRIMARY KEY,
    queued_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
) WITHOUT ROWID;
"""


class StateError(RuntimeError):
    """The state store cannot be used; the message says what to do."""


@dataclass(frozen=True)
class Checkpoint:
    log_id: str
    date: Optional[str] = None  # the log's `date`, to tell a retention gap


@dataclass(frozen=True)
class CachedToken:
    access_token: str
    expires_at: float  # epoch seconds
    client_id: str
    scope: str = ""


# An interface, no behaviour to mutate (and mutmut's wrappers would hide its
# signatures from tests/unit/test_kvstate.py).
# pragma: no mutate start
class StateBackend(Protocol):
    """What the collector needs of an input's state, wherever it lives: this
    module's sqlite file (`StateStore`) or Splunk's KV store
    (`kvstate.KVStateStore`). A run uses one, from one process."""

    def checkpoint(self) -> Optional[Checkpoint]: ...

    def start_date(self) -> Optional[str]: ...

    def set_start_date(self, iso: str) -> None: ...

    def known_users(self, user_ids: Iterable[str]) -> set[str]: ...

    def commit_page(
        self, checkpoint: Optional[Checkpoint], known: Iterable[str] = (), flags_to_write: Iterable[str] = ()
    ) -> None: ...

    def pending_flags(self, limit: int = 100) -> list[str]: ...

    def pending_count(self) -> int: ...

    def flag_done(self, user_id: str) -> None: ...

    def flag_failed(self, user_id: str, error: str) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> StateBackend: ...

    def __exit__(self, *exc) -> None: ...


# pragma: no mutate end
@dataclass(frozen=True)
class PendingFlag:
    user_id: str
    queued_at: float
    attempts: int = 0
    last_error: Optional[str] = None


def state_id(input_name: str, domain: str) -> str:
    """An input's state is keyed by its name and tenant: changing the domain starts afresh."""
    return hashlib.sha256(f"{input_name}\n{domain}".encode()).hexdigest()[:16]


def state_path(checkpoint_dir: str, input_name: str, domain: str) -> str:
    """One file per input and tenant."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", input_name)[:64]
    return os.path.join(checkpoint_dir, f"ta_auth0-{safe}-{state_id(input_name, domain)}.sqlite")


class StateStore:
    """The state of one input. Not thread-safe; one run uses one store."""

    def __init__(self, path: str) -> None:
        if sqlite3 is None:
            raise StateError(
                "this Python has no sqlite3 module, which TA-auth0 needs for its checkpoint; "
                'check with: $SPLUNK_HOME/bin/splunk cmd python3 -c "import sqlite3"'
            )
        self.path = path
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            # Create it owner-only before sqlite opens it: it holds the token.
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            os.chmod(path, 0o600)
            # isolation_level=None: transactions are opened explicitly below.
            self._db = sqlite3.connect(path, isolation_level=None, timeout=30)
            # Write-ahead log, synced at checkpoints rather than at every
            # commit: a commit is still atomic and survives a crash of the
            # process (a power cut may undo the last pages, which are then
            # sent again: at-least-once holds). A fsync per page was the
            # largest cost of a page after the HTTP call. SQLite creates the
            # -wal and -shm files with the database's own 0600 mode.
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.executescript(_SCHEMA)
            self._set("schema_version", SCHEMA_VERSION)
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"cannot open the checkpoint file {path}: {exc}") from exc

    @classmethod
    def open(cls, checkpoint_dir: str, input_name: str, domain: str) -> StateStore:
        return cls(state_path(checkpoint_dir, input_name, domain))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- key/value -----------------------------------------------------------
    def _get(self, key: str) -> Optional[str]:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _set(self, key: str, value: Optional[str]) -> None:
        if value is None:
            self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- checkpoint ----------------------------------------------------------
    def checkpoint(self) -> Optional[Checkpoint]:
        log_id = self._get("last_log_id")
        return Checkpoint(log_id, self._get("last_log_date")) if log_id else None

    def start_date(self) -> Optional[str]:
        """For `start_from = now`: the moment the input first ran (ISO-8601)."""
        return self._get("start_date")

    def set_start_date(self, iso: str) -> None:
        self._set("start_date", iso)

    # -- users ---------------------------------------------------------------
    def known_users(self, user_ids: Iterable[str]) -> set[str]:
        """Which of these users the add-on knows: one query per page."""
        ids = list(set(user_ids))
        known: set[str] = set()
        # sqlite's default limit is 999 bound parameters per statement.
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT user_id FROM known_users WHERE user_id IN ({marks})", chunk)
            known.update(row[0] for row in rows)
        return known

    def commit_page(
        self,
        checkpoint: Optional[Checkpoint],
        known: Iterable[str] = (),
        flags_to_write: Iterable[str] = (),
    ) -> None:
        """After a page's events are flushed: move the checkpoint and record
        what the page taught us, all in one transaction."""
        now = time.time()
        with self._transaction():
            if checkpoint is not None:
                self._set("last_log_id", checkpoint.log_id)
                self._set("last_log_date", checkpoint.date)
            self._db.executemany("INSERT OR IGNORE INTO known_users (user_id) VALUES (?)", ((u,) for u in known))
            self._db.executemany(
                "INSERT OR IGNORE INTO pending_flags (user_id, queued_at) VALUES (?, ?)",
                ((u, now) for u in flags_to_write),
            )

    def known_user_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM known_users").fetchone()[0]

    # -- pending flag writes -------------------------------------------------
    def pending_flags(self, limit: int = 100) -> list[str]:
        """Oldest first, so a user never waits behind newer ones for ever."""
        rows = self._db.execute("SELECT user_id FROM pending_flags ORDER BY queued_at, user_id LIMIT ?", (limit,))
        return [row[0] for row in rows]

    def pending_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM pending_flags").fetchone()[0]

    def flag_done(self, user_id: str) -> None:
        self._db.execute("DELETE FROM pending_flags WHERE user_id = ?", (user_id,))

    def flag_failed(self, user_id: str, error: str) -> None:
        self._db.execute(
            "UPDATE pending_flags SET attempts = attempts + 1, last_error = ? WHERE user_id = ?",
            (error[:500], user_id),
        )

    # -- carrying the state over to the KV store (kvstate.migrate_local) ------------
    def has_state(self) -> bool:
        return bool(self.checkpoint() or self.start_date() or self.known_user_count() or self.pending_count())

    def all_known_users(self) -> Iterator[str]:
        for (user_id,) in self._db.execute("SELECT user_id FROM known_users ORDER BY user_id"):
            yield user_id

    def all_pending_flags(self) -> list[PendingFlag]:
        rows = self._db.execute("SELECT user_id, queued_at, attempts, last_error FROM pending_flags ORDER BY queued_at")
        return [PendingFlag(*row) for row in rows]

    def auto_choice(self) -> Optional[str]:
        """state_store = auto's remembered choice (see stores._remembered_choice)."""
        return self._get("auto_choice")

    def set_auto_choice(self, choice: str) -> None:
        self._set("auto_choice", choice)

    def migrated_at(self) -> Optional[str]:
        """When this state was carried over to the KV store (ISO-8601), if it was."""
        return self._get("migrated_to_kvstore")

    def mark_migrated(self, iso: str) -> None:
        self._set("migrated_to_kvstore", iso)

    # -- cached token --------------------------------------------------------
    def token(self) -> Optional[CachedToken]:
        access_token = self._get("token")
        expires_at = self._get("token_expires_at")
        client_id = self._get("token_client_id")
        if not (access_token and expires_at and client_id):
            return None
        return CachedToken(access_token, float(expires_at), client_id, self._get("token_scope") or "")

    def save_token(self, token: Optional[CachedToken]) -> None:
        with self._transaction():
            self._set("token", token and token.access_token)
            self._set("token_expires_at", token and repr(token.expires_at))
            self._set("token_client_id", token and token.client_id)
            self._set("token_scope", token and token.scope)

    def _transaction(self):
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""

    def __init__(self, db) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type:
            self._db.execute("ROLLBACK")
        else:
            self._db.execute("COMMIT")
