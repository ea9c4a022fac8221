"""One run of an input: log pages in, events out, state committed.

For each page of at most 100 logs, in Auth0's checkpoint order (log_id):
  look up the page's users in the state store (one query) -> classify each
  `s`/`ss` log (activity.py; a user read only for a new user whose log has
  no login count), and with `collect = all` keep every other log as Auth0
  sent it -> write the page's events with one write and one flush
  (stream.py) -> commit the checkpoint, the newly known users and the flag
  writes they need, in one commit -> flag writes as the rate limits allow
  (flags.py).
The checkpoint never moves before the events it covers are flushed, so a
crash replays at most the page in flight and never skips a log.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterator, Optional

from . import activity
from .auth0_api import (
    PAGE_SIZE,
    Auth0Client,
    Auth0RequestError,
    Auth0Unavailable,
    CheckpointExpired,
    UserNotFound,
)
from .config import COLLECT_ALL, START_NOW, START_OLDEST, InputConfig
from .flags import FlagWriter
from .state import Checkpoint, StateBackend
from .stream import PageWriter
from .transport import LogPage

log = logging.getLogger("ta_auth0")

SOURCE = "auth0"
SOURCETYPE = "auth0_activity"
SOURCETYPE_LOG = "auth0"  # every other Auth0 log, with collect = all (SPEC §4.1)
# A run stops fetching new pages after this long and continues next interval
# from its checkpoint, so a large backlog never turns into one endless
# process and every run reports its summary line.
RUN_BUDGET_SECONDS = 600.0
# Users this run has seen known, kept in memory so that a repeat login skips
# the state store's lookup (a few microseconds a user, most of a page's
# cost after the HTTP call). Bounded, so memory stays flat: when full it
# starts over. It only ever says "known", which the state never takes back.
KNOWN_CACHE_SIZE = 16384


@dataclass
class RunStats:
    logs_read: int = 0
    events_written: int = 0
    signups: int = 0
    logins: int = 0
    other_events: int = 0
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
    """Runs one input once."""

    def __init__(
        self,
        config: InputConfig,
        state: StateBackend,
        api: Auth0Client,
        stream: PageWriter,
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
        self.stream = stream
        self.deadline = deadline
        self.stats = RunStats()
        self.flags = FlagWriter(state, api, config.metadata_flag, deadline)
        self.heartbeat = heartbeat
        self.ran_before = ran_before
        self._collect_all = config.collect == COLLECT_ALL
        begun = state.start_date()  # where the input began: START_OLDEST or a date
        self._start = None if begun in (None, START_OLDEST) else begun  # logs dated before it are not collected
        self._known_cache: set = set()

    def run(self) -> RunStats:
        update = self.config.update_metadata
        if update:
            self.api.idle_work = self.flags.write_one_now
            self.flags.drain(patient=False)  # leftovers of earlier runs that can go at once
        try:
            for page in self._pages():
                queued = self._process(page)
                if update:
                    self.flags.after_page(queued)
            if update:
                self.flags.drain(patient=True)  # the logs are read: now flags may wait
        finally:
            self.api.idle_work = None
            self.stats.flag_writes_done = self.flags.stats.done
            self.stats.flag_writes_skipped = self.flags.stats.skipped
        return self.stats

    # -- reading ---------------------------------------------------------------
    def _pages(self) -> Iterator[LogPage]:
        checkpoint = self.state.checkpoint()
        if checkpoint is None and self.state.start_date() is None:
            # The first run records when it began (before any call that may
            # fail); a later run that finds neither that nor a checkpoint has
            # lost its state.
            if self.ran_before:
                checkpoint = self._start_after_lost_state()
            if checkpoint is None:
                # A new input, or a lost state on a tenant with no log: nothing
                # to skip, every log that comes is new. Recording the start
                # keeps the next run from taking the first of them for history.
                self._begin()
        if checkpoint is None:
            first = self._first_page()
            if not first:
                self.stats.caught_up = True
                return
            yield first
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

    def _first_page(self) -> LogPage:
        """Where a brand-new input starts (start_from): the oldest retained
        log, or the first log since a date (`now`: the input's first run, as
        recorded in state, so later runs agree on it and never collect a log
        dated before it)."""
        first = _earliest_in_log_order(self.api.oldest_logs(self._start))
        log.info(
            "new input: starting at %s (start_from=%s)",
            "no log yet" if not first else f"log_id {first[0].get('log_id')} of {first[0].get('date')}",
            self._start or START_OLDEST,
        )
        return first

    def _begin(self) -> None:
        """The first run records where the input begins, before any call
        that may fail: a later run that finds neither this nor a checkpoint
        has lost its state."""
        start = self.config.start_from
        if start == START_OLDEST:
            self.state.set_start_date(START_OLDEST)
            return
        self._start = _iso(datetime.now(timezone.utc) if start == START_NOW else start)
        self.state.set_start_date(self._start)

    def _start_after_lost_state(self) -> Optional[Checkpoint]:
        """SPEC §7: an input that ran before finds no state (wiped, or moved to
        another search head without the KV store). Reading from start_from
        again would re-send up to 30 days and give users a second Signup, so
        it starts after the newest log and says what may be missing."""
        newest = self.api.newest_log()
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

    def _restart_after_gap(self, checkpoint: Checkpoint, error: CheckpointExpired) -> LogPage:
        """Auth0 answered 400 to `from=<checkpoint>`. If its oldest retained
        logs are newer than the checkpoint, the logs in between are gone: say
        so and go on from the oldest. Otherwise the 400 means something else: stop."""
        oldest = self.api.oldest_logs()
        dates = [activity.parse_date(entry.get("date")) for entry in oldest]
        checkpoint_date = activity.parse_date(checkpoint.date)
        first = _earliest_in_log_order(oldest)
        if not first or None in dates or checkpoint_date is None or min(dates) <= checkpoint_date:
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
            _iso(min(dates)),
            first[0].get("log_id"),
        )
        return first

    # -- one page ------------------------------------------------------------------
    def _process(self, page: LogPage) -> int:
        """Write the page's events, then commit; returns the flag writes queued."""
        if self.heartbeat is not None:
            self.heartbeat()
        start = self._start
        wanted = [
            (index, entry, entry.get("type") in activity.ACTIVITY_TYPES)
            for index, entry in enumerate(page)
            if start is None or not activity.is_before(entry.get("date"), start)
        ]
        page_users = {activity.user_id(entry) for _, entry, is_activity in wanted if is_activity} - {None}
        known_before = self._known_users(page_users)
        known = set(known_before)
        flagged, gone = set(), set()
        events, signups, logins = [], 0, 0
        tenant = self.config.domain
        for index, entry, is_activity in wanted:
            if is_activity:
                uid = activity.user_id(entry)
                count = activity.logins_count(entry)
                flag = None
                if activity.needs_flag(entry, uid in known, count):
                    flag = self._read_flag(uid, gone)
                    if flag is True:
                        flagged.add(uid)
                message = activity.classify(entry, uid in known, flag, count)
                if message == activity.SIGNUP:
                    signups += 1
                else:
                    logins += 1
                if uid:
                    known.add(uid)
                data = activity.to_json(activity.event_data(entry, message, tenant, count))
                events.append((activity.event_time(entry.get("date")), SOURCETYPE, data))
            elif self._collect_all:
                data = activity.stream_json(entry.get("log_id"), page.raw(index))
                events.append((activity.event_time(entry.get("date")), SOURCETYPE_LOG, data))

        # One write and one flush: once it returns, splunkd has the page.
        self.stream.write_page(events)

        # Every user with an event is known from now on, deleted ones too (so a
        # later log of theirs is a Login without another lookup); the flag is
        # written for those not already flagged and still in Auth0.
        learned = known - known_before
        to_flag = sorted(learned - flagged - gone) if self.config.update_metadata else []
        last = next((entry for entry in reversed(page) if entry.get("log_id")), None)
        checkpoint = Checkpoint(str(last["log_id"]), last.get("date")) if last else None
        self.state.commit_page(checkpoint, sorted(learned), to_flag)
        self._remember_known(learned)

        stats = self.stats
        stats.logs_read += len(page)
        stats.events_written += len(events)
        stats.signups += signups
        stats.logins += logins
        stats.other_events += len(events) - signups - logins
        stats.last_log_id = checkpoint.log_id if checkpoint else stats.last_log_id
        newest = activity.newest_date([entry.get("date") for entry in page])
        if newest and (stats.newest_log_date is None or activity.is_before(stats.newest_log_date, newest)):
            stats.newest_log_date = newest
        return len(to_flag)

    def _known_users(self, users: set) -> set:
        """Which of these users the add-on knows: the cache, then one state query."""
        known = users & self._known_cache
        rest = users - known
        if rest:
            found = self.state.known_users(rest)
            self._remember_known(found)
            known |= found
        return known

    def _remember_known(self, users: set) -> None:
        if len(self._known_cache) + len(users) > KNOWN_CACHE_SIZE:
            self._known_cache.clear()
        self._known_cache.update(users)

    def _read_flag(self, uid: str, gone: set) -> object:
        try:
            return self.api.user_flag(uid, self.config.metadata_flag)
        except UserNotFound:
            log.info("user %s no longer exists in Auth0: classified by its log alone", uid)
            gone.add(uid)
            return None

    def _time_left(self) -> bool:
        return time.monotonic() < self.deadline


def _earliest_in_log_order(logs: LogPage) -> LogPage:
    """Of logs found by date, the one that comes first in checkpoint order.

    Auth0 reads by checkpoint in log_id order, and dates are not always in
    that order: starting from the earliest *date* could skip a log that was
    written a little later but got a smaller log_id. Starting from the
    smallest log_id among the oldest hundred by date covers such skew.
    Auth0's log_ids are fixed-width digit strings, so (length, text) orders
    them as Auth0 does."""
    indexes = [i for i, entry in enumerate(logs) if entry.get("log_id")]
    if not indexes:
        return LogPage()
    first = min(indexes, key=lambda i: (len(str(logs[i]["log_id"])), str(logs[i]["log_id"])))
    return logs.only(first)


def _iso(moment: datetime) -> str:
    """Auth0's own date format: UTC, milliseconds, Z."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
