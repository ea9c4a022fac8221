"""Per-input state in Splunk's KV store, shared by every search head of a cluster.

The same state as `state.StateStore` (the checkpoint, the known users, the
pending flag writes, the start date of `start_from = now`), in the app's
collections (default/collections.conf), through splunklib's
`service.kvstore` in the app's namespace with the session key splunkd
passes. The access token is not kept here (SPEC §7): it stays in the
member's local file, or in memory.

The KV store has no transactions, so a page is committed like this:

1. the page's newly known users and its flag writes are saved with
   `batch_save`, each under a key derived from the state id and the user id
   (saving again writes the same document: idempotent), and each carrying
   `seq`, the number of the page being committed;
2. then ONE write of the state document: the checkpoint after the page and
   `seq` = that page's number.

Readers count a user as known, and a flag write as pending, only when its
`seq` is at most the state document's. So until step 2 lands nothing of the
page is visible, and once it lands all of it is: a crash (kill -9) between
any two writes leaves the state before the page or after it, and a page
read again after a crash classifies exactly as the first time. What a lost
attempt left behind (documents with a higher `seq`) is overwritten by the
replay, which saves the same keys with the same `seq`.

Limits (limits.conf [kvstore]): at most 1 000 documents and 50 MB per
batch_save, 50 000 rows per query; a page has at most 100 users. Known users
are looked up a page at a time by key (batch_find), never by a scan.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Iterable, Iterator, Optional

from splunklib import binding

from .state import Checkpoint, StateError, StateStore, state_id

STATE = "ta_auth0_state"
USERS = "ta_auth0_users"
FLAGS = "ta_auth0_flags"
LEASES = "ta_auth0_leases"
COLLECTIONS = (STATE, USERS, FLAGS, LEASES)

MAX_DOCUMENTS_PER_BATCH = 1000  # max_documents_per_batch_save
MAX_BYTES_PER_BATCH = 8 * 1024 * 1024  # well under max_size_per_batch_save_mb = 50
MAX_ROWS_PER_QUERY = 50000  # max_rows_per_query
KEYS_PER_QUERY = 200  # an $or of keys per batch_find query
KEYS_PER_DELETE = 40  # a DELETE's query travels in the URL: keep it short


class KVStoreError(StateError):
    """The KV store could not be used; the run stops (never a local fallback)."""


def describe_http_error(exc: Exception) -> str:
    """`503 KV Store is initializing...`: the status and splunkd's own message."""
    status = getattr(exc, "status", None)
    text = ""
    body = getattr(exc, "body", b"") or b""
    try:
        messages = json.loads(body.decode("utf-8") if isinstance(body, bytes) else body).get("messages") or []
        text = "; ".join(str(m.get("text")) for m in messages if m.get("text"))
    except (ValueError, AttributeError):
        text = ""
    reason = text or getattr(exc, "reason", None) or str(exc)
    return f"{status} {reason}" if status else str(reason)


class KVCollection:
    """One collection's data endpoint (splunklib's KVStoreCollectionData),
    with splunkd's HTTP errors turned into KVStoreError."""

    def __init__(self, data, name: str) -> None:
        self.data = data
        self.name = name

    def _call(self, what: str, call):
        try:
            return call()
        except binding.HTTPError as exc:
            raise self._error(what, exc) from None
        except OSError as exc:
            raise KVStoreError(f"cannot reach splunkd's KV store ({what} {self.name}): {exc}") from None

    def _error(self, what: str, exc: Exception) -> KVStoreError:
        detail = describe_http_error(exc)
        if getattr(exc, "status", None) == 503:
            return KVStoreError(
                f"the KV store is not ready ({detail}): the run stops and writes nothing; "
                "it never falls back to a local file. It goes on next interval once the KV store is up"
            )
        return KVStoreError(f"KV store {what} on collection {self.name} failed: {detail}")

    def get(self, key: str) -> Optional[dict[str, Any]]:
        try:
            return self.data.query_by_id(key)
        except binding.HTTPError as exc:
            if exc.status == 404:
                return None
            raise self._error("read", exc) from None
        except OSError as exc:
            raise KVStoreError(f"cannot reach splunkd's KV store (read {self.name}): {exc}") from None

    def insert_new(self, doc: dict[str, Any]) -> bool:
        """Insert under doc's _key; False if that key exists (409): the one
        exclusive operation the KV store has."""
        try:
            self.data.insert(json.dumps(doc))
        except binding.HTTPError as exc:
            if exc.status == 409:
                return False
            raise self._error("insert", exc) from None
        except OSError as exc:
            raise KVStoreError(f"cannot reach splunkd's KV store (insert {self.name}): {exc}") from None
        return True

    def update(self, key: str, doc: dict[str, Any]) -> None:
        self._call("update", lambda: self.data.update(key, json.dumps(doc)))

    def put(self, doc: dict[str, Any]) -> None:
        """Write a document whether or not its key exists."""
        self.save([doc])

    def save(self, docs: list[dict[str, Any]]) -> None:
        """batch_save, in batches within the KV store's limits."""
        for batch in _batches(docs):
            self._call("batch_save", lambda batch=batch: self.data.batch_save(*batch))

    def query(self, **params) -> list[dict[str, Any]]:
        return self._call("query", lambda: self.data.query(**params))

    def find(self, queries: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        return self._call("batch_find", lambda: self.data.batch_find(*queries))

    def delete_where(self, query: dict[str, Any]) -> None:
        self._call("delete", lambda: self.data.delete(json.dumps(query)))


def _batches(docs: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    size = 0
    for doc in docs:
        length = len(json.dumps(doc)) + 2
        if batch and (len(batch) >= MAX_DOCUMENTS_PER_BATCH or size + length > MAX_BYTES_PER_BATCH):
            yield batch
            batch, size = [], 0
        batch.append(doc)
        size += length
    if batch:
        yield batch


def collections(service) -> dict[str, KVCollection]:
    """The app's collections, with one request; a clear error if one is missing."""
    try:
        found = {c.name: c for c in service.kvstore.list()}
    except binding.HTTPError as exc:
        raise KVCollection(None, "config")._error("list", exc) from None
    except OSError as exc:
        raise KVStoreError(f"cannot reach splunkd's KV store: {exc}") from None
    missing = [name for name in COLLECTIONS if name not in found]
    if missing:
        raise KVStoreError(
            f"the KV store has no collection {', '.join(missing)} in app TA-auth0: install the whole app "
            "(its default/collections.conf) on this search head, on a cluster through the deployer"
        )
    return {name: KVCollection(found[name].data, name) for name in COLLECTIONS}


class KVStateStore:
    """The state of one input in the KV store (state.StateBackend)."""

    def __init__(self, kv: dict[str, KVCollection], input_name: str, domain: str) -> None:
        self.kv = kv
        self.input_name = input_name
        self.domain = domain
        self.state_id = state_id(input_name, domain)
        self._doc = kv[STATE].get(self.state_id)
        self._done: list[str] = []  # flag writes done, deleted in batches

    def close(self) -> None:
        self._flush_done()

    def __enter__(self) -> KVStateStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def has_state(self) -> bool:
        return self._doc is not None

    @property
    def seq(self) -> int:
        """The number of the last committed page (0: none yet)."""
        return int((self._doc or {}).get("seq") or 0)

    def _key(self, user_id: str) -> str:
        return f"{self.state_id}.{hashlib.sha256(user_id.encode('utf-8')).hexdigest()[:32]}"

    def _write_state(self, **changes: Any) -> None:
        doc = {k: v for k, v in (self._doc or {}).items() if not k.startswith("_")}
        doc.update(changes, input=self.input_name, domain=self.domain, updated_at=time.time())
        self.kv[STATE].put(dict(doc, _key=self.state_id))
        self._doc = doc

    # -- checkpoint ------------------------------------------------------------
    def checkpoint(self) -> Optional[Checkpoint]:
        doc = self._doc or {}
        return Checkpoint(doc["last_log_id"], doc.get("last_log_date")) if doc.get("last_log_id") else None

    def start_date(self) -> Optional[str]:
        return (self._doc or {}).get("start_date")

    def set_start_date(self, iso: str) -> None:
        self._write_state(start_date=iso, seq=self.seq)

    # -- users -----------------------------------------------------------------
    def known_users(self, user_ids: Iterable[str]) -> set[str]:
        """Which of these users a committed page taught us: one batch_find per page."""
        keys = sorted({self._key(uid) for uid in user_ids})
        if not keys:
            return set()
        queries = [
            {
                "query": {"$and": [{"$or": [{"_key": k} for k in chunk]}, {"seq": {"$lte": self.seq}}]},
                "fields": "user_id",
                "limit": len(chunk),
            }
            for chunk in _chunks(keys, KEYS_PER_QUERY)
        ]
        return {row["user_id"] for rows in self.kv[USERS].find(queries) for row in rows if "user_id" in row}

    def commit_page(
        self, checkpoint: Optional[Checkpoint], known: Iterable[str] = (), flags_to_write: Iterable[str] = ()
    ) -> None:
        """Users and flags first (invisible until the state says seq), the state last."""
        seq = self.seq + 1
        users = [{"_key": self._key(u), "state": self.state_id, "user_id": u, "seq": seq} for u in known]
        now = time.time()
        flags = [self._flag_doc(u, seq, now) for u in flags_to_write]
        if users:
            self.kv[USERS].save(users)
        if flags:
            self.kv[FLAGS].save(flags)
        moved = {"last_log_id": checkpoint.log_id, "last_log_date": checkpoint.date} if checkpoint else {}
        self._write_state(seq=seq, **moved)

    def _flag_doc(self, user_id: str, seq: int, queued_at: float, attempts: int = 0, error=None) -> dict[str, Any]:
        return {
            "_key": self._key(user_id),
            "state": self.state_id,
            "user_id": user_id,
            "seq": seq,
            "queued_at": queued_at,
            "attempts": attempts,
            "last_error": error,
        }

    # -- pending flag writes ------------------------------------------------------
    def _pending_query(self) -> dict[str, Any]:
        return {"state": self.state_id, "seq": {"$lte": self.seq}}

    def pending_flags(self, limit: int = 100) -> list[str]:
        """Oldest first, as the local store."""
        self._flush_done()
        rows = self.kv[FLAGS].query(
            query=self._pending_query(), sort="queued_at,user_id", limit=limit, fields="user_id"
        )
        return [row["user_id"] for row in rows]

    def pending_count(self) -> int:
        self._flush_done()
        count = 0
        while True:  # a query answers at most max_rows_per_query rows (50 000 unless an admin changed it)
            rows = self.kv[FLAGS].query(
                query=self._pending_query(), fields="_key", sort="_key", skip=count, limit=MAX_ROWS_PER_QUERY
            )
            if not rows:
                return count
            count += len(rows)

    def flag_done(self, user_id: str) -> None:
        # Deleted in batches: a flag written again after a crash is harmless
        # (the PATCH sets the same key to true).
        self._done.append(self._key(user_id))
        if len(self._done) >= KEYS_PER_DELETE:
            self._flush_done()

    def flag_failed(self, user_id: str, error: str) -> None:
        self._flush_done()
        doc = self.kv[FLAGS].get(self._key(user_id))
        if doc is None:
            return
        attempts = int(doc.get("attempts") or 0) + 1
        self.kv[FLAGS].update(
            doc["_key"],
            self._flag_doc(user_id, int(doc.get("seq") or 0), float(doc.get("queued_at") or 0), attempts, error[:500]),
        )

    def _flush_done(self) -> None:
        while self._done:
            chunk, self._done = self._done[:KEYS_PER_DELETE], self._done[KEYS_PER_DELETE:]
            self.kv[FLAGS].delete_where({"$or": [{"_key": k} for k in chunk]})

    # -- carrying a local state over, once ------------------------------------------
    def import_local(self, local: StateStore) -> tuple[int, int]:
        """Copy a local file's state in as page 1, state document last (the
        same protocol as a page). Returns (known users, pending flags)."""
        seq = self.seq + 1
        users = 0
        batch: list[dict[str, Any]] = []
        for uid in local.all_known_users():
            batch.append({"_key": self._key(uid), "state": self.state_id, "user_id": uid, "seq": seq})
            users += 1
            if len(batch) >= MAX_DOCUMENTS_PER_BATCH:
                self.kv[USERS].save(batch)
                batch = []
        if batch:
            self.kv[USERS].save(batch)
        flags = [
            self._flag_doc(f.user_id, seq, f.queued_at, f.attempts, f.last_error) for f in local.all_pending_flags()
        ]
        if flags:
            self.kv[FLAGS].save(flags)
        checkpoint = local.checkpoint()
        moved = {"last_log_id": checkpoint.log_id, "last_log_date": checkpoint.date} if checkpoint else {}
        start = {"start_date": local.start_date()} if local.start_date() else {}
        self._write_state(seq=seq, **moved, **start)
        return users, len(flags)


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
