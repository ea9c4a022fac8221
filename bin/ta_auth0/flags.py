"""Writing users' app_metadata flags (SPEC §5.3, §5.5), fitted around the log reads.

Every flag to write is first queued in the state store, in the same commit
as the page whose events made it due, so a flag is never lost and never
written for an event Splunk did not get. Then it goes out when Auth0's rate
limits leave room (SPEC §7):

* while log reads wait for their bucket, and that bucket is not the one flag
  writes use, one write at a time goes out in the wait (`write_one_now`, the
  Auth0 client's idle work);
* after each page, the writes that can go at once;
* where log reads and flag writes share one bucket (free tenants), the
  writes the page queued (and one more of an older backlog) go after the
  page, waiting as needed, so neither kind starves the other;
* once the logs are read, the rest, waiting as needed.

A write that fails for any reason but a rate limit pauses the writes for the
run (they stay queued); a user deleted since (404) is skipped. Flags never
hold back the events.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Optional

from .auth0_api import PAGE_SIZE, Auth0ApiError, Auth0Unavailable, RateLimited, UserNotFound

log = logging.getLogger("ta_auth0")


@dataclass
class FlagStats:
    done: int = 0
    skipped: int = 0


class FlagWriter:
    def __init__(self, state, api, flag: str, deadline: float) -> None:
        self.state = state
        self.api = api
        self.flag = flag
        self.deadline = deadline
        self.stats = FlagStats()
        self._paused = False
        self._queue: list = []  # the next pending users, read from the state store

    def write_one_now(self) -> float:
        """Idle work: one write if its bucket has room now. Returns 0 when it
        wrote, else the seconds until it could (infinite: nothing to write)."""
        if self._paused or self._next() is None:
            return float("inf")
        wait = self.api.wait_for("users_write")
        if wait > 0:
            return wait
        return 0.0 if self._write(self._next(), patient=False) else float("inf")

    def after_page(self, queued: int) -> None:
        """Between pages: what can go at once, or on a shared bucket this
        page's share, waiting for it."""
        if self.api.shares_bucket("logs", "users_write"):
            self.drain(limit=queued + 1, patient=True)
        else:
            self.drain(patient=False)

    def drain(self, *, patient: bool, limit: Optional[int] = None) -> None:
        """Write queued flags until none is left, `limit` are written, the run's
        time is spent, or (not patient) the bucket has no room now."""
        written = 0
        while not self._paused and time.monotonic() < self.deadline and (limit is None or written < limit):
            uid = self._next()
            if uid is None or not self._write(uid, patient):
                return
            written += 1

    def _next(self) -> Optional[str]:
        if not self._queue:
            self._queue = self.state.pending_flags(limit=PAGE_SIZE)
        return self._queue[0] if self._queue else None

    def _write(self, uid: str, patient: bool) -> bool:
        """One write; True when the user is done with (written or gone)."""
        try:
            self.api.set_user_flag(uid, self.flag, patient=patient)
        except UserNotFound:
            log.info("user %s was deleted from Auth0 since its event: flag write skipped", uid)
            self.stats.skipped += 1
        except RateLimited as exc:
            if patient:  # waited as long as a run may: the rest is for the next run
                self._pause(uid, exc, logging.WARNING)
            return False
        except Auth0Unavailable as exc:
            self._pause(uid, exc, logging.WARNING)
            return False
        except Auth0ApiError as exc:
            self._pause(uid, exc, logging.ERROR)
            return False
        else:
            self.stats.done += 1
        self._queue.pop(0)
        self.state.flag_done(uid)
        return True

    def _pause(self, uid: str, exc: Exception, level: int) -> None:
        self.state.flag_failed(uid, str(exc))
        self._paused = True
        self._queue = []
        log.log(level, "flag writes paused for this run, %d kept for the next: %s", self.state.pending_count(), exc)
