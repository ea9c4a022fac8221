"""Signup or Login (SPEC §5) and the event's JSON (SPEC §4): pure functions.

The original Auth0 rule decided by `user.app_metadata.signedUp`: absent means
first authentication ("Signup"), true means "Login". Reading logs afterwards
lets us do better: Auth0 records the login count in most `s` logs, so a user
who existed before the add-on was installed is not counted as new.
"""

from __future__ import annotations

import functools
import json
import re
from datetime import date, datetime, timezone
from typing import Any, Mapping, Optional, Sequence

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

# One encoder for every event: json.dumps with options builds a new encoder
# per call, and JSONEncoder.encode still builds its C encoder per call; the
# C encoder it builds (json.encoder.c_make_encoder, there in CPython 3.9 to
# 3.13) is made once here, with the same settings, and reused.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_C_ENCODE = (
    json.encoder.c_make_encoder(
        None, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",", False, False, True
    )
    if getattr(json.encoder, "c_make_encoder", None)
    else None
)
# Auth0's own date format, e.g. 2026-11-20T10:11:12.345Z: read without datetime.
_AUTH0_DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
_AUTH0_DAY = re.compile(r"\d{4}-\d\d-\d\d")
_AUTH0_CLOCK = re.compile(r"T\d\d:\d\d:\d\d\.\d{3}Z")
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
    that is not a positive integer counts as absent; of several, the largest.
    """
    details = log.get("details")
    if not isinstance(details, dict):
        return None
    best = _stat(details.get("stats"))
    prompts = details.get("prompts")
    if isinstance(prompts, list):
        for prompt in prompts:
            stats = prompt.get("stats") if isinstance(prompt, dict) else None
            if stats is not None:
                count = _stat(stats)
                if count is not None and (best is None or count > best):
                    best = count
    return best


def _stat(stats: Any) -> Optional[int]:
    if not isinstance(stats, dict):
        return None
    count = stats.get("loginsCount")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        return None
    return count


# "not computed yet": the collector computes a log's count once and passes it on.
_UNSET: Any = object()


def needs_flag(log: Mapping[str, Any], known: bool, count: Optional[int] = _UNSET) -> bool:
    """True when only the user's app_metadata flag can decide (SPEC §5 rule 2)."""
    if log.get("type") != "s" or known or user_id(log) is None:
        return False
    return (logins_count(log) if count is _UNSET else count) is None


def classify(log: Mapping[str, Any], known: bool, flagged: Optional[bool] = None, count: Optional[int] = _UNSET) -> str:
    """Signup or Login for an `s`/`ss` log.

    known: the add-on already wrote an event for this user, or knows their
    flag is true. flagged: the user's app_metadata flag, read from Auth0 only
    when `needs_flag` says so (None when it was not read or the user is gone).
    count: the log's `logins_count`, if already computed.
    """
    if log.get("type") == "ss":
        return SIGNUP
    if known:
        return LOGIN
    if count is _UNSET:
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


def event_data(log: Mapping[str, Any], message: str, tenant: str, count: Optional[int] = _UNSET) -> dict:
    """The event's JSON object: the rule's six keys, then the log's own fields."""
    get = log.get
    return {
        "message": message,
        "application": get("client_name"),
        "clientIP": get("ip"),
        "protocol": protocol(log),
        "userName": get("user_name"),
        "userId": get("user_id"),
        "log_id": get("log_id"),
        "date": get("date"),
        "type": get("type"),
        "description": get("description"),
        "connection": get("connection"),
        "connection_id": get("connection_id"),
        "strategy": get("strategy"),
        "strategy_type": get("strategy_type"),
        "client_id": get("client_id"),
        "user_agent": get("user_agent"),
        "hostname": get("hostname"),
        "loginsCount": logins_count(log) if count is _UNSET else count,
        "tenant": tenant,
    }


def to_json(data: Mapping[str, Any]) -> str:
    """Compact UTF-8 JSON decoding to exactly `data` (stream.py makes it XML-safe).

    `data` must not refer to itself (the reused C encoder does not check)."""
    if _C_ENCODE is None:
        return _ENCODER.encode(data)
    return "".join(_C_ENCODE(data, 0))


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

    This runs for every event, so Auth0's own format (2026-11-20T10:11:12.345Z)
    is read with slices and integer arithmetic, the day's start cached;
    anything else goes through parse_date."""
    if isinstance(value, str) and len(value) == 24 and _AUTH0_CLOCK.fullmatch(value, 10):
        start = _day_start(value[:10])
        hour, minute, second = int(value[11:13]), int(value[14:16]), int(value[17:19])
        if start is not None and hour < 24 and minute < 60 and second < 60:
            return f"{start + hour * 3600 + minute * 60 + second}.{value[20:23]}"
        return None
    moment = parse_date(value)
    return None if moment is None else f"{moment.timestamp():.3f}"


@functools.lru_cache(maxsize=64)
def _day_start(day: str) -> Optional[int]:
    """Epoch seconds of 00:00 UTC on `day` (YYYY-MM-DD), None if it is no such day (or before 1970)."""
    if not _AUTH0_DAY.fullmatch(day):
        return None
    try:
        days = date(int(day[:4]), int(day[5:7]), int(day[8:10])).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None
    return days * 86400 if days >= 0 else None


def is_before(value: Any, moment: str) -> bool:
    """True when the date `value` is earlier than the ISO date `moment`; a
    missing or unreadable date is never before anything (nothing odd is
    dropped). Auth0's own format compares as text."""
    if isinstance(value, str) and _AUTH0_DATE.fullmatch(value) and _AUTH0_DATE.fullmatch(moment):
        return value < moment
    mine, theirs = parse_date(value), parse_date(moment)
    return mine is not None and theirs is not None and mine < theirs


def newest_date(values: Sequence[Any]) -> Optional[str]:
    """The latest of these dates (as given), None when none is readable.
    When all are in Auth0's own format they compare as text."""
    texts = [value for value in values if isinstance(value, str)]
    if texts and all(len(text) == 24 and text[-1] == "Z" for text in texts):
        newest = max(texts)
        if _AUTH0_DATE.fullmatch(newest):
            return newest
    best: Optional[tuple] = None
    for text in texts:
        moment = parse_date(text)
        if moment is not None and (best is None or moment > best[1]):
            best = (text, moment)
    return best[0] if best else None


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
