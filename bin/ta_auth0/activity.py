"""Signup or Login (SPEC §5) and the event's JSON (SPEC §4): pure functions.

The original Auth0 rule decided by `user.app_metadata.signedUp`: absent means
first authentication ("Signup"), true means "Login". Reading logs afterwards
lets us do better: Auth0 records the login count in most `s` logs, so a user
who existed before the add-on was installed is not counted as new.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timezone
from typing import Any, Iterable, Mapping, Optional

SIGNUP = "Signup"
LOGIN = "Login"

# The one table of Auth0 log types that become events. `ss` is logged only
# for database and passwordless connections; social and enterprise
# connections log their first login as `s`.
ACTIVITY_TYPES = {
    "ss": "Success Signup",
    "s": "Success Login",
}

# Keys of the event, in the order written. The first six are the original
# rule's payload, so searches written for it keep working.
EVENT_KEYS = (
    "message",
    "application",
    "clientIP",
    "protocol",
    "userName",
    "userId",
    "log_id",
    "date",
    "type",
    "description",
    "connection",
    "connection_id",
    "strategy",
    "strategy_type",
    "client_id",
    "user_agent",
    "hostname",
    "loginsCount",
    "tenant",
)

# One encoder for every event: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
# Auth0's own date format, e.g. 2026-11-20T10:11:12.345Z: read without datetime.
_AUTH0_DATE = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z")
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def is_activity(log: Mapping[str, Any]) -> bool:
    return log.get("type") in ACTIVITY_TYPES


def user_id(log: Mapping[str, Any]) -> Optional[str]:
    value = log.get("user_id")
    return value if isinstance(value, str) and value else None


def logins_count(log: Mapping[str, Any]) -> Optional[int]:
    """Auth0's login count for the user at this log, if the log carries it.

    Current logs: `details.prompts[].stats.loginsCount`; older ones:
    `details.stats.loginsCount`. SSO and silent logins carry none. Anything
    that is not a positive integer counts as absent.
    """
    details = log.get("details")
    if not isinstance(details, dict):
        return None
    found = []
    prompts = details.get("prompts")
    for prompt in prompts if isinstance(prompts, list) else ():
        if isinstance(prompt, dict):
            found.append(_stat(prompt.get("stats")))
    found.append(_stat(details.get("stats")))
    counts = [count for count in found if count is not None]
    return max(counts) if counts else None


def _stat(stats: Any) -> Optional[int]:
    if not isinstance(stats, dict):
        return None
    count = stats.get("loginsCount")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        return None
    return count


def needs_flag(log: Mapping[str, Any], known: bool) -> bool:
    """True when only the user's app_metadata flag can decide (SPEC §5 rule 2)."""
    return log.get("type") == "s" and not known and logins_count(log) is None and user_id(log) is not None


def classify(log: Mapping[str, Any], known: bool, flagged: Optional[bool] = None) -> str:
    """Signup or Login for an `s`/`ss` log.

    known: the add-on already wrote an event for this user, or knows their
    flag is true. flagged: the user's app_metadata flag, read from Auth0 only
    when `needs_flag` says so (None when it was not read or the user is gone).
    """
    if log.get("type") == "ss":
        return SIGNUP
    if known:
        return LOGIN
    count = logins_count(log)
    if count is not None:
        return SIGNUP if count == 1 else LOGIN
    return LOGIN if flagged is True else SIGNUP


def protocol(log: Mapping[str, Any]) -> Optional[str]:
    """The protocol Auth0 recorded for the flow: only `ss` logs carry it."""
    details = log.get("details")
    body = details.get("body") if isinstance(details, dict) else None
    transaction = body.get("transaction") if isinstance(body, dict) else None
    value = transaction.get("protocol") if isinstance(transaction, dict) else None
    return value if isinstance(value, str) else None


def event_data(log: Mapping[str, Any], message: str, tenant: str) -> dict:
    """The event's JSON object: the rule's six keys, then the log's own fields."""
    return {
        "message": message,
        "application": log.get("client_name"),
        "clientIP": log.get("ip"),
        "protocol": protocol(log),
        "userName": log.get("user_name"),
        "userId": log.get("user_id"),
        "log_id": log.get("log_id"),
        "date": log.get("date"),
        "type": log.get("type"),
        "description": log.get("description"),
        "connection": log.get("connection"),
        "connection_id": log.get("connection_id"),
        "strategy": log.get("strategy"),
        "strategy_type": log.get("strategy_type"),
        "client_id": log.get("client_id"),
        "user_agent": log.get("user_agent"),
        "hostname": log.get("hostname"),
        "loginsCount": logins_count(log),
        "tenant": tenant,
    }


def to_json(data: Mapping[str, Any]) -> str:
    """Compact UTF-8 JSON decoding to exactly `data` (stream.py makes it XML-safe)."""
    return _ENCODER.encode(data)


def stream_json(log_id: Any, raw: str) -> str:
    """The event of a log that is not a signup or login (SPEC §4.1): Auth0's
    log stream shape, `{"log_id": …, "data": <the log as Auth0 sent it>}`.
    `raw` is the log's own JSON text from the answer, spliced in unchanged."""
    return '{"log_id":' + _ENCODER.encode(log_id) + ',"data":' + raw + "}"


def log_time(log: Mapping[str, Any]) -> Optional[float]:
    """Epoch seconds (millisecond precision) of the log's `date`, or None."""
    moment = parse_date(log.get("date"))
    return None if moment is None else round(moment.timestamp(), 3)


def event_time(value: Any) -> Optional[str]:
    """A log's `date` as the event's <time>: epoch seconds with milliseconds.

    Auth0's own format is read with a regex and integer arithmetic (this runs
    for every event); anything else goes through parse_date."""
    match = _AUTH0_DATE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        moment = parse_date(value)
        return None if moment is None else f"{moment.timestamp():.3f}"
    year, month, day, hour, minute, second, millis = match.groups()
    try:
        days = date(int(year), int(month), int(day)).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None
    if days < 0 or int(hour) > 23 or int(minute) > 59 or int(second) > 59:
        return None
    return f"{days * 86400 + int(hour) * 3600 + int(minute) * 60 + int(second)}.{millis}"


def is_before(value: Any, moment: str) -> bool:
    """True when the date `value` is earlier than the ISO date `moment`; a
    missing or unreadable date is never before anything (nothing odd is
    dropped). Auth0's own format compares as text."""
    if isinstance(value, str) and _AUTH0_DATE.fullmatch(value) and _AUTH0_DATE.fullmatch(moment):
        return value < moment
    mine, theirs = parse_date(value), parse_date(moment)
    return mine is not None and theirs is not None and mine < theirs


def newest_date(values: Iterable[Any]) -> Optional[str]:
    """The latest of these dates (as given), None when none is readable."""
    newest: Optional[str] = None
    for value in values:
        if isinstance(value, str) and (newest is None or is_before(newest, value)):
            if newest is not None or parse_date(value) is not None:
                newest = value
    return newest


def parse_date(value: Any) -> Optional[datetime]:
    if not isinstance(value, str) or not value:
        return None
    text = value[:-1] + "+00:00" if value[-1:] in "Zz" else value
    try:
        moment = datetime.fromisoformat(_three_decimals(text))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _three_decimals(text: str) -> str:
    # Python 3.9's fromisoformat takes only 3 or 6 fractional digits; Auth0
    # writes 3, but be lenient with other widths.
    match = re.match(r"^(.*T\d\d:\d\d:\d\d)\.(\d+)(.*)$", text)
    if not match:
        return text
    head, fraction, tail = match.groups()
    return f"{head}.{(fraction + '000000')[:6]}{tail}"
