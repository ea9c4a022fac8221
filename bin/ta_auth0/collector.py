"""One run of an input: log pages in, events out, state committed.

For each page of at most 100 logs:
  look up the page's users in the state store (one query) -> classify each
  `s`/`ss` log (activity.py; a user read only for a new user whose log has
  no login count) -> write and flush the events -> commit the checkpoint,
  the newly known users and the flag writes they need, in one transaction
  -> write the flags.
The checkpoint never moves before the events it covers are flushed, so a
crash replays at most the page in flight and never skips a log.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterator, Optional

from splunklib.modularinput import Event

from . import activity
from .auth0_api import (
    PAGE_SIZE,
    Auth0ApiError,
    Auth0Client,
    Auth0RequestError,
    Auth0Unavailable,
    CheckpointExpired,
    RateLimited,
    UserNotFound,
)
from .config import START_NOW, START_OLDEST, InputConfig
from .state import Checkpoint, StateBackend

log = logging.getLogger("ta_auth0")

SOURCE = "auth0"
SOURCETYPE = "auth0_activity"
# A run stops fetching new pages after this long and continues next interval
# from its checkpoint, so a large backlog never turns into one endless
# process and every run reports its summary line.
RUN_BUDGET_SECONDS = 600.0


@dataclass
class RunStats:
    logs_read: int = 0
    events_written: int = 0
    signups: int = 0
    logins: int = 0
    flag_writes_done: int = 0
    flag_writes_pending: int = 0
    flag_writes_skipped: int = 0
    last_log_id: Optional[str] = None
    newest_log_date: Optional[str] = None
    caught_up: bool = False

    def lag_seconds(self, now: float) -> Optional[float]:
        """Now minus the date of the newest log read (None when none was read)."""
        newest = activity.parse_date(self.newest_log_date)
        return None if newest is None else max(0.0, now - newest.timestamp())


class Collector:
    """Runs one input once. `writer` is splunklib's EventWriter."""

    def __init__(
        self,
        config: InputConfig,
        state: StateBackend,
        api: Auth0Client,
        writer,
        stanza: str,
        deadline: float,
        heartbeat: Optional[Callable[[], None]] = None,
        ran_before: bool = False,
    ) -> None:
        """`heartbeat` runs before each page (the KV store lease's renewal: it
        raises to stop the run); `ran_before`: the input has run before (its
        secret is masked), so finding no state means the state was lost."""
        self.config = config
        self.state = state
        self.api = api
        self.writer = writer
        self.stanza = stanza
        self.deadline = deadline
        self.stats = RunStats()
        self._flags_paused = False
        self.heartbeat = heartbeat
        self.ran_before = ran_before

    def run(self) -> RunStats:
        self._write_pending_flags(wait=False)  # leftovers of earlier runs first
        for page in self._pages():
            self._process(page)
            self._write_pending_flags(wait=False)
        self._write_pending_flags(wait=True)  # caught up: now flags may wait for the rate limit
        return self.stats

    # -- reading ---------------------------------------------------------------
    def _pages(self) -> Iterator[list[dict]]:
        checkpoint = self.state.checkpoint()
        if checkpoint is None and self.state.start_date() is None:
            # The first run records when it began (before any call that may
            # fail); a later run that finds neither that nor a checkpoint has
            # lost its state.
            if self.ran_before:
                checkpoint = self._start_after_lost_state()
                if checkpoint is None:
                    self.stats.caught_up = True
                    return
            else:
                self.state.set_start_date(_iso(datetime.now(timezone.utc)))
        if checkpoint is None:
            first = self._first_log()
            if first is None:
                self.stats.caught_up = True
                return
            yield [first]
            checkpoint = self.state.checkpoint()
            if checkpoint is None:
                raise Auth0Unavailable("Auth0 returned a log without log_id: cannot set the checkpoint")
        while self._time_left():
            try:
                page = self.api.logs_after(checkpoint.log_id)
                full = len(page) == PAGE_SIZE
            except CheckpointExpired as exc:
                page, full = self._restart_after_gap(checkpoint, exc), True  # one log: more may follow
            if not page:
                self.stats.caught_up = True
                return
            yield page
            moved = self.state.checkpoint()
            if moved == checkpoint:
                raise Auth0Unavailable("Auth0 returned a page of logs without log_id: cannot move the checkpoint")
            checkpoint = moved
            if not full:  # a short page: nothing more for now
                self.stats.caught_up = True
                return
        log.info(
            "time budget of %.0fs spent: continuing from log_id %s next interval", RUN_BUDGET_SECONDS, checkpoint.log_id
        )

    def _first_log(self) -> Optional[dict]:
        """Where a brand-new input starts (start_from): the oldest retained log,
        or the first log since a date. `now` is the input's first run (the
        start date in state), so that later runs before any log arrives agree on it."""
        start = self.config.start_from
        if start == START_OLDEST:
            since = None
        elif start == START_NOW:
            since = self.state.start_date()
        else:
            since = _iso(start)
        first = self.api.first_log(since)
        log.info("new input: starting at %s (start_from=%s)", _describe(first), since or START_OLDEST)
        return first

    def _start_after_lost_state(self) -> Optional[Checkpoint]:
        """SPEC §7: an input that ran before finds no state (wiped, or moved to
        another search head without the KV store). Reading from start_from
        again would re-send up to 30 days and give users a second Signup, so
        it starts after the newest log and says what may be missing."""
        newest = self.api.first_log(newest=True)
        if newest is None or not newest.get("log_id"):
            log.error("this input has run before but its state is gone, and the tenant has no log: starting afresh")
            return None
        checkpoint = Checkpoint(str(newest["log_id"]), newest.get("date"))
        self.state.commit_page(checkpoint)
        self.stats.last_log_id = checkpoint.log_id
        log.error(
            "this input has run before but found no state (checkpoint file wiped, or the input moved to another "
            "search head; on a search head cluster or Splunk Cloud use state_store = kvstore): to send nothing "
            "twice it goes on after the newest log, log_id %s of %s. Logs from the newest event of this input "
            "in Splunk up to %s may be missing: find where they stop with `sourcetype=auth0_activity host=%s "
            "| stats max(_time)`; Auth0 keeps them for its retention (1-30 days), and a second input with "
            "start_from = that time and update_metadata = false, disabled once it reaches %s, fills the gap",
            checkpoint.log_id,
            checkpoint.date,
            checkpoint.date,
            self.config.domain,
            checkpoint.date,
        )
        return checkpoint

    def _restart_after_gap(self, checkpoint: Checkpoint, error: CheckpointExpired) -> list[dict]:
        """Auth0 answered 400 to `from=<checkpoint>`. If its oldest retained log
        is newer than the checkpoint, the logs in between are gone: say so and
        go on from the oldest. Otherwise the 400 means something else: stop."""
        oldest = self.api.first_log()
        oldest_date = activity.parse_date(oldest.get("date")) if oldest else None
        checkpoint_date = activity.parse_date(checkpoint.date)
        if oldest is None or oldest_date is None or checkpoint_date is None or oldest_date <= checkpoint_date:
            raise Auth0RequestError(
                f"Auth0 refused to read logs after the checkpoint log_id {checkpoint.log_id} ({error}), "
                "and the checkpoint is still within the tenant's retention",
                400,
                "invalid_checkpoint",
            )
        log.warning(
            "checkpoint log_id %s (%s) has fallen out of Auth0's log retention: logs from %s to %s are lost "
            "for good (raise the interval's frequency or the plan's retention); restarting from the oldest "
            "retained log %s",
            checkpoint.log_id,
            checkpoint.date,
            checkpoint.date,
            oldest.get("date"),
            oldest.get("log_id"),
        )
        return [oldest]

    # -- one page ------------------------------------------------------------------
    def _process(self, page: list[dict]) -> None:
        if self.heartbeat is not None:
            self.heartbeat()
        entries = [entry for entry in page if activity.is_activity(entry)]
        page_users = {activity.user_id(entry) for entry in entries} - {None}
        known_before = self.state.known_users(page_users) if page_users else set()
        known = set(known_before)
        flagged, gone = set(), set()
        events: list[tuple[str, Event]] = []
        for entry in entries:
            uid = activity.user_id(entry)
            flag = None
            if activity.needs_flag(entry, uid in known):
                flag = self._read_flag(uid, gone)
                if flag is True:
                    flagged.add(uid)
            message = activity.classify(entry, uid in known, flag)
            events.append((message, self._event(entry, message)))
            if uid:
                known.add(uid)

        # splunklib's Event.write_to flushes stdout after each event, so once
        # this loop is done the page is with splunkd and the commit may follow.
        for _, event in events:
            self.writer.write_event(event)

        # Every user with an event is known from now on, deleted ones too (so a
        # later log of theirs is a Login without another lookup); the flag is
        # written for those not already flagged and still in Auth0.
        learned = known - known_before
        to_flag = sorted(learned - flagged - gone) if self.config.update_metadata else []
        last = next((entry for entry in reversed(page) if entry.get("log_id")), None)
        checkpoint = Checkpoint(str(last["log_id"]), last.get("date")) if last else None
        self.state.commit_page(checkpoint, sorted(learned), to_flag)

        self._count(page, events, checkpoint)

    def _read_flag(self, uid: str, gone: set) -> object:
        try:
            return self.api.user_flag(uid, self.config.metadata_flag)
        except UserNotFound:
            log.info("user %s no longer exists in Auth0: classified by its log alone", uid)
            gone.add(uid)
            return None

    def _event(self, entry: dict, message: str) -> Event:
        time_ = activity.log_time(entry)
        return Event(
            data=activity.to_json(activity.event_data(entry, message, self.config.domain)),
            stanza=self.stanza,
            time=None if time_ is None else f"{time_:.3f}",
            host=self.config.domain,
            index=self.config.index,
            source=SOURCE,
            sourcetype=SOURCETYPE,
        )

    def _count(self, page: list[dict], events: list[tuple[str, Event]], checkpoint: Optional[Checkpoint]) -> None:
        stats = self.stats
        stats.logs_read += len(page)
        stats.events_written += len(events)
        stats.signups += sum(1 for message, _ in events if message == activity.SIGNUP)
        stats.logins += sum(1 for message, _ in events if message == activity.LOGIN)
        stats.last_log_id = checkpoint.log_id if checkpoint else stats.last_log_id
        dates = [d for d in (activity.parse_date(entry.get("date")) for entry in page) if d is not None]
        newest = activity.parse_date(stats.newest_log_date)
        if dates and (newest is None or max(dates) > newest):
            stats.newest_log_date = _iso(max(dates))

    # -- flags -------------------------------------------------------------------------
    def _write_pending_flags(self, wait: bool) -> None:
        """Set the flag on users queued by committed pages. Between pages no
        rate-limit wait is allowed (a limited bucket defers the rest to after
        the last page); failures stay queued for a later run. Flags never
        hold back the events."""
        if not self.config.update_metadata or self._flags_paused:
            return
        if wait:
            self._drain_flags(wait)
        else:
            with self.api.no_rate_limit_waits():
                self._drain_flags(wait)

    def _drain_flags(self, wait: bool) -> None:
        while self._time_left():
            batch = self.state.pending_flags(limit=PAGE_SIZE)
            if not batch:
                return
            for uid in batch:
                try:
                    self.api.set_user_flag(uid, self.config.metadata_flag)
                except UserNotFound:
                    log.info("user %s was deleted from Auth0 since its event: flag write skipped", uid)
                    self.stats.flag_writes_skipped += 1
                except RateLimited as exc:
                    if wait:
                        self._pause_flags(uid, exc, logging.WARNING)
                    return
                except Auth0Unavailable as exc:
                    self._pause_flags(uid, exc, logging.WARNING)
                    return
                except Auth0ApiError as exc:
                    self._pause_flags(uid, exc, logging.ERROR)
                    return
                else:
                    self.stats.flag_writes_done += 1
                self.state.flag_done(uid)

    def _pause_flags(self, uid: str, exc: Exception, level: int) -> None:
        self.state.flag_failed(uid, str(exc))
        self._flags_paused = True
        log.log(level, "flag writes paused for this run, %d kept for the next: %s", self.state.pending_count(), exc)

    def _time_left(self) -> bool:
        return time.monotonic() < self.deadline


def _iso(moment: datetime) -> str:
    """Auth0's own date format: UTC, milliseconds, Z."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _describe(entry: Optional[dict]) -> str:
    return "no log yet" if entry is None else f"log_id {entry.get('log_id')} of {entry.get('date')}"
