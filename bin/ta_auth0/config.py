"""The input's parameters: parsed and checked once, into a typed InputConfig.

Everything here is pure: no files, no network. The same checks serve Splunk's
`--validate-arguments` (the Data inputs form) and run mode, so a bad value
gets the same message in both places. Messages say what is wrong and what a
good value looks like; they never contain the secret.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable, Mapping, Optional, Union
from urllib.parse import urlsplit

SCHEME = "auth0_activity"
MASK = "********"
START_OLDEST = "oldest"
START_NOW = "now"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
COLLECT_ACTIVITY = "activity"  # successful signups and logins only (SPEC §4)
COLLECT_ALL = "all"  # and every other Auth0 log, in the log stream's shape (SPEC §4.1)
COLLECT_CHOICES = (COLLECT_ACTIVITY, COLLECT_ALL)

# The Management API scopes each kind of call needs (SPEC §3). Auth0's API
# reference lists several scopes on some endpoints, and any one of them grants
# the call; the first is the one a refusal names (read:logs is what Auth0's
# own log-export guides ask for; update:users_app_metadata is narrower than
# update:users).
ENDPOINT_SCOPES = {
    "logs": ("read:logs", "read:logs_users"),
    "users_read": ("read:users",),
    "users_write": ("update:users_app_metadata", "update:users"),
}
STATE_AUTO, STATE_LOCAL, STATE_KVSTORE = "auto", "local", "kvstore"
STATE_STORES = (STATE_AUTO, STATE_LOCAL, STATE_KVSTORE)

_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
# app_metadata keys: Auth0 refuses dots and a leading '$' in metadata field
# names; we keep to a plain identifier so the key is also a clean Splunk field.
_FLAG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off"}

StartFrom = Union[str, datetime]  # START_OLDEST, START_NOW or an aware datetime


class ConfigError(ValueError):
    """One or more parameters are invalid; str() lists every problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class InputConfig:
    """One `auth0_activity://<name>` stanza, checked."""

    name: str
    domain: str
    client_id: str
    client_secret: str = field(repr=False)
    start_from: StartFrom = START_OLDEST
    update_metadata: bool = True
    metadata_flag: str = "signedUp"
    proxy_url: Optional[str] = field(default=None, repr=False)
    log_level: str = "INFO"
    collect: str = COLLECT_ACTIVITY
    index: Optional[str] = None
    state_store: str = STATE_AUTO  # where the state lives: stores.open_state

    @property
    def secret_is_masked(self) -> bool:
        return self.client_secret == MASK

    @property
    def needed_calls(self) -> tuple[str, ...]:
        """The kinds of Management API call these settings make (ENDPOINT_SCOPES keys)."""
        return ("logs", "users_read") + (("users_write",) if self.update_metadata else ())

    def missing_scopes(self, granted: Iterable[str]) -> list[str]:
        """For each needed call no granted scope covers, the scope to add."""
        have = set(granted)
        return [ENDPOINT_SCOPES[call][0] for call in self.needed_calls if not have & set(ENDPOINT_SCOPES[call])]


def input_name(stanza: str) -> str:
    """`auth0_activity://prod` -> `prod` (splunkd passes the full stanza name)."""
    prefix = SCHEME + "://"
    return stanza[len(prefix) :] if stanza.startswith(prefix) else stanza


def parse_config(stanza: str, params: Mapping[str, object]) -> InputConfig:
    """Build an InputConfig from splunkd's parameters, or raise ConfigError."""
    problems: list[str] = []

    def text(key: str) -> str:
        value = params.get(key)
        return "" if value is None else str(value).strip()

    def check(parser, key, default=None):
        raw = text(key)
        if not raw:
            return default
        try:
            return parser(raw)
        except ValueError as exc:
            problems.append(str(exc))
            return default

    domain = text("domain")
    if not domain:
        problems.append("domain is required: the Auth0 tenant domain, e.g. example.us.auth0.com")
    else:
        domain = check(parse_domain, "domain", "")
    client_id = text("client_id")
    if not client_id:
        problems.append("client_id is required: the Client ID of the machine-to-machine application")
    elif not re.fullmatch(r"[A-Za-z0-9_\-.]{1,128}", client_id):
        problems.append("client_id must be the application's Client ID (letters, digits, - _ .)")
    secret = text("client_secret")
    if not secret:
        problems.append("client_secret is required: the Client Secret of the machine-to-machine application")
    config = InputConfig(
        name=input_name(stanza),
        domain=domain,
        client_id=client_id,
        client_secret=secret,
        start_from=check(parse_start_from, "start_from", START_OLDEST),
        update_metadata=check(lambda v: parse_bool("update_metadata", v), "update_metadata", True),
        metadata_flag=check(parse_flag_name, "metadata_flag", "signedUp"),
        proxy_url=check(parse_proxy_url, "proxy_url"),
        log_level=check(parse_log_level, "log_level", "INFO"),
        collect=check(parse_collect, "collect", COLLECT_ACTIVITY),
        state_store=check(parse_state_store, "state_store", STATE_AUTO),
        # "default" names no index: leave it to splunkd's routing for the input.
        index=None if text("index") in ("", "default") else text("index"),
    )
    if problems:
        raise ConfigError(problems)
    return config


def parse_domain(value: str) -> str:
    """`host` or `host:port`, lower-cased; no scheme, path, user or spaces.

    Single-label names (`localhost`, an internal alias) are hosts too."""
    wrong = f"domain must be a host name like example.us.auth0.com, got {value!r}"
    if any(c.isspace() for c in value) or "/" in value or "@" in value or "?" in value or "#" in value:
        raise ValueError(wrong)
    host, _, port = value.lower().partition(":")
    if port:
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"domain's port must be a number from 1 to 65535, got {value!r}")
        port = str(int(port))
    labels = host.rstrip(".").split(".")
    if _IPV4.match(host):
        if any(int(part) > 255 for part in labels):
            raise ValueError(wrong)
    elif len(host) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise ValueError(wrong)
    host = host.rstrip(".")
    return f"{host}:{port}" if port else host


def parse_start_from(value: str) -> StartFrom:
    """`oldest`, `now`, or an ISO-8601 date / date-time (UTC when no offset)."""
    lowered = value.lower()
    if lowered in (START_OLDEST, START_NOW):
        return lowered
    try:
        # Python 3.9's fromisoformat does not read a trailing "Z".
        moment = datetime.fromisoformat(value[:-1] + "+00:00" if value[-1:] in "Zz" else value)
    except ValueError:
        raise ValueError(
            f"start_from must be oldest, now or an ISO-8601 date/time such as "
            f"2026-11-18 or 2026-11-18T09:00:00Z, got {value!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def parse_bool(key: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{key} must be true or false, got {value!r}")


def parse_flag_name(value: str) -> str:
    if not _FLAG_NAME.match(value):
        raise ValueError(
            "metadata_flag must be an app_metadata key name: a letter or _ followed by "
            f"letters, digits, _ or - (at most 64), got {value!r}"
        )
    return value


def parse_log_level(value: str) -> str:
    level = value.upper()
    level = "WARNING" if level == "WARN" else level
    if level not in LOG_LEVELS:
        raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return level


def parse_collect(value: str) -> str:
    lowered = value.lower()
    if lowered not in COLLECT_CHOICES:
        raise ValueError(
            f"collect must be activity (successful signups and logins) or all (every Auth0 log), got {value!r}"
        )
    return lowered


def parse_state_store(value: str) -> str:
    lowered = value.lower()
    if lowered not in STATE_STORES:
        raise ValueError(f"state_store must be one of {', '.join(STATE_STORES)}, got {value!r}")
    return lowered


def parse_proxy_url(value: str) -> str:
    """`http(s)://[user:password@]host:port`; the message never repeats credentials."""
    parts = urlsplit(value)
    shown = redact_url(value)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or not port:
        raise ValueError(f"proxy_url must look like http://proxy.example.com:3128, got {shown!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"proxy_url must not have a path or query, got {shown!r}")
    return value


def redact_url(value: str) -> str:
    """The URL with any user:password replaced by a mask, for messages."""
    parts = urlsplit(value)
    if parts.username is None and parts.password is None:
        return value
    netloc = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{MASK}@{netloc}").geturl()


def proxy_password(proxy_url: Optional[str]) -> Optional[str]:
    """The password inside a proxy URL, if any (a secret, SPEC §6)."""
    if not proxy_url:
        return None
    return urlsplit(proxy_url).password
