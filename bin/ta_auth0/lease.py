"""One collector per input across a search head cluster: a lease in the KV store.

On an on-prem search head cluster splunkd starts an enabled modular input on
every member; on Splunk Cloud the member that runs it can change. The KV
store is shared by all members but has no transactions and no conditional
update: the one operation that only one writer can win is inserting a
document with a given `_key` (the loser gets 409). So the lease is a chain
of documents keyed `<state id>.<generation>`: whoever inserts the next
generation holds the lease. A run:

1. reads the newest generation (one query on the accelerated
   `state, generation` fields);
2. steps aside (`LeaseHeld`, nothing written) when it is live, not released,
   and another member's; otherwise
3. inserts generation + 1 with its member name and an expiry. 409: another
   member won the same race, so this one steps aside; 201: it holds the
   lease, and deletes the older generations;
4. renews it before each page (`renew`, the collector's heartbeat): if a
   newer generation exists, the lease was taken over and the run stops
   (`LeaseLost`) before writing that page;
5. releases it at the end (marks its own generation released), so the next
   run on any member starts at once.

A live lease of this same member is taken over: splunkd runs one instance
of an input at a time on a member, so it is the leftover of a run that died.

TTL: 15 minutes. A run renews the lease before every page, but between two
renewals it may wait: on a rate limit up to `auth0_api.MAX_WAIT` (300 s) per
request, plus retries with backoff. A run stops taking new pages after its
budget (`collector.RUN_BUDGET_SECONDS`, 600 s) and a last wait can run past
that by up to MAX_WAIT: 600 + 300 = 900 s bounds how long a live run can go
without renewing, so a lease of 900 s never expires under a run that is
still working, and a member that takes over a stale lease never races one.
The price: after a crash (kill -9, a member lost) another member waits up
to 15 minutes before it takes over; a run that ends normally releases the
lease and the next interval on any member goes on at once.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .state import StateError

LEASE_TTL_SECONDS = 900.0


class LeaseHeld(Exception):
    """Another member holds the input's lease: this run steps aside (not an error)."""


class LeaseLost(StateError):
    """The lease was taken over mid-run: this run stops before writing more."""


@dataclass(frozen=True)
class _Holder:
    generation: int
    member: str
    expires_at: float
    released: bool

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> _Holder:
        return cls(
            int(doc["generation"]),
            str(doc.get("member") or "?"),
            float(doc.get("expires_at") or 0),
            bool(doc.get("released")),
        )


class Lease:
    """The input's lease. `kv` is a kvstate.KVCollection (the leases collection)."""

    def __init__(self, kv, state_id: str, member: str, clock: Callable[[], float] = time.time) -> None:
        self.kv = kv
        self.state_id = state_id
        self.member = member
        self.run = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.clock = clock
        self.generation: Optional[int] = None

    def _key(self, generation: int) -> str:
        return f"{self.state_id}.{generation:012d}"

    def _newest(self) -> Optional[_Holder]:
        rows = self.kv.query(query={"state": self.state_id}, sort="generation:-1", limit=1)
        return _Holder.from_doc(rows[0]) if rows else None

    def _document(self, generation: int, expires_at: float, released: bool = False) -> dict[str, Any]:
        return {
            "_key": self._key(generation),
            "state": self.state_id,
            "generation": generation,
            "member": self.member,
            "run": self.run,
            "expires_at": expires_at,
            "released": released,
        }

    def acquire(self) -> None:
        """Take the lease or raise LeaseHeld."""
        now = self.clock()
        newest = self._newest()
        if newest is not None and self._held_by_another(newest, now):
            raise LeaseHeld(self._held_message(newest))
        generation = (newest.generation if newest else 0) + 1
        if not self.kv.insert_new(self._document(generation, now + LEASE_TTL_SECONDS)):
            winner = self._newest()
            raise LeaseHeld(self._held_message(winner) if winner else "another member took the lease first")
        self.generation = generation
        # The chain only needs its newest link.
        self.kv.delete_where({"state": self.state_id, "generation": {"$lt": generation}})

    def renew(self) -> None:
        """Before each page: still ours? then push the expiry out."""
        if self.generation is None:
            return
        newest = self._newest()
        if newest is None or newest.generation != self.generation:
            taker = f" by {newest.member}" if newest else ""
            raise LeaseLost(
                f"this input's lease was taken over{taker} while this run waited: it stops here; "
                "the member holding the lease goes on from the shared checkpoint"
            )
        self.kv.update(self._key(self.generation), self._document(self.generation, self.clock() + LEASE_TTL_SECONDS))

    def release(self) -> None:
        """At the end of a run: the next run, on any member, need not wait."""
        if self.generation is None:
            return
        newest = self._newest()
        if newest is not None and newest.generation == self.generation:
            self.kv.update(self._key(self.generation), self._document(self.generation, self.clock(), released=True))
        self.generation = None

    def _held_by_another(self, holder: _Holder, now: float) -> bool:
        return not holder.released and holder.expires_at > now and holder.member != self.member

    def _held_message(self, holder: _Holder) -> str:
        until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(holder.expires_at))
        return (
            f"search head {holder.member} holds this input's lease (until {until} unless renewed): "
            f"it collects, this member ({self.member}) steps aside and writes nothing"
        )
