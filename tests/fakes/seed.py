"""Seed data for ``FakeTenant``: the realistic fixture, and synthetic volume.

``load_seed(tenant)`` loads ``tests/fixtures/seed_tenant.json``: users, a few
days of Auth0 logs (dates stored as offsets from "now", e.g. ``"-3d+10m"``,
resolved at load time so retention and ``start_from`` tests mean the same
whenever they run), and the three test applications. It returns a ``Seed``
with the fixture author's hand-written expectations (which ``s``/``ss`` log
is a Signup or a Login under SPEC §5, and each user's ``app_metadata`` after
a run) keyed by the log ids the tenant assigned.

``generate_activity(tenant, n_logs)`` adds deterministic synthetic activity
for benchmarks (100 000 logs load in a few seconds), with dates that are
sometimes out of log_id order, as Auth0's are.
"""

from __future__ import annotations

import collections
import copy
import json
import random
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from .tenant import ALL_SCOPES, FakeTenant, iso_ms

DEFAULT_SEED_PATH = Path(__file__).resolve().parent.parent / "fixtures" / "seed_tenant.json"

# The application the add-on is configured with: every scope it needs.
MAIN_CLIENT_ID = "test-client-id"
MAIN_CLIENT_SECRET = "test-client-secret-DO-NOT-LEAK-42"
# Only read:logs (for missing-scope tests).
LOGS_ONLY_CLIENT_ID = "test-logs-only-client-id"
LOGS_ONLY_CLIENT_SECRET = "test-logs-only-secret-DO-NOT-LEAK-43"
# No client grant for the Management API at all (403 at /oauth/token).
NO_GRANT_CLIENT_ID = "test-no-grant-client-id"
NO_GRANT_CLIENT_SECRET = "test-no-grant-secret-DO-NOT-LEAK-44"
# Every call the add-on makes, granted by the other scope Auth0 lists for it
# (read:logs_users for logs, update:users for the flag): SPEC §3's any-of.
ALT_SCOPES_CLIENT_ID = "test-alt-scopes-client-id"
ALT_SCOPES_CLIENT_SECRET = "test-alt-scopes-secret-DO-NOT-LEAK-45"
ALT_SCOPES = ("read:logs_users", "read:users", "update:users")

_UNIT = r"\d+(?:\.\d+)?(?:ms|d|h|m|s)"
_OFFSET_RE = re.compile(rf"([+-])((?:{_UNIT})+)")
_UNIT_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
_UNIT_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def resolve_date(spec: str, now: float) -> str:
    """``"-3d22h+10m"`` -> ISO date (ms, Z) relative to ``now`` (epoch s).

    Each sign applies to the run of units after it (``-3d22h`` is 3 days 22
    hours ago); units d, h, m, s, ms. ``"now"`` is now. Anything not starting
    with a sign must already be an ISO date and is returned unchanged."""
    text = spec.replace(" ", "")
    if text == "now":
        return iso_ms(now)
    if text[:1] not in "+-":
        return spec
    pos, total = 0, 0.0
    for match in _OFFSET_RE.finditer(text):
        if match.start() != pos:
            break
        sign = -1 if match.group(1) == "-" else 1
        for amount, unit in _UNIT_RE.findall(match.group(2)):
            total += sign * float(amount) * _UNIT_SECONDS[unit]
        pos = match.end()
    if pos != len(text):
        raise ValueError(f"bad date offset {spec!r} (use e.g. -3d+10m)")
    return iso_ms(now + total)


class Seed:
    """What ``load_seed`` loaded, with the fixture's expectations.

    * ``refs``: fixture ref -> log_id, for every fixture log.
    * ``expected``: log_id -> "Signup" / "Login" for every ``s``/``ss`` log,
      in log order (hand-written in the fixture from SPEC §5, assuming one
      fresh input with ``start_from = oldest``, ``update_metadata = true``,
      ``metadata_flag = signedUp``).
    * ``expected_by_ref``: the same keyed by ref.
    * ``app_metadata_after``: user_id -> the user's app_metadata after such
      a run (users still in the tenant).
    * ``deleted_users``: user ids that appear in logs but not in the tenant.
    * ``now``: the epoch seconds the offsets were resolved against.
    """

    def __init__(self, fixture: Dict[str, Any], refs: Dict[str, str], now: float):
        self.fixture = fixture
        self.now = now
        self.refs = refs
        exp = fixture.get("expected", {})
        self.expected_by_ref: Dict[str, str] = dict(exp.get("events", {}))
        ordered = sorted(self.expected_by_ref.items(), key=lambda item: refs[item[0]])
        self.expected: Dict[str, str] = collections.OrderedDict((refs[r], kind) for r, kind in ordered)
        self.app_metadata_after: Dict[str, Dict[str, Any]] = copy.deepcopy(exp.get("app_metadata_after", {}))
        self.deleted_users: List[str] = list(exp.get("deleted_users", []))
        self.signups = sum(1 for kind in self.expected.values() if kind == "Signup")
        self.logins = sum(1 for kind in self.expected.values() if kind == "Login")

    def ref_of(self, log_id: str) -> Optional[str]:
        for ref, lid in self.refs.items():
            if lid == log_id:
                return ref
        return None


def load_fixture(path: Union[str, Path] = DEFAULT_SEED_PATH) -> Dict[str, Any]:
    with open(str(path), encoding="utf-8") as handle:
        return json.load(handle)


def add_test_clients(tenant: FakeTenant) -> None:
    """The applications the tests use (see module constants)."""
    tenant.add_client(MAIN_CLIENT_ID, MAIN_CLIENT_SECRET, scopes=ALL_SCOPES, name="Splunk TA-auth0 (test)")
    tenant.add_client(LOGS_ONLY_CLIENT_ID, LOGS_ONLY_CLIENT_SECRET, scopes=["read:logs"], name="Logs only (test)")
    tenant.add_client(
        NO_GRANT_CLIENT_ID, NO_GRANT_CLIENT_SECRET, scopes=[], api_grant=False, name="No Management API grant (test)"
    )
    tenant.add_client(ALT_SCOPES_CLIENT_ID, ALT_SCOPES_CLIENT_SECRET, scopes=ALT_SCOPES, name="Other scopes (test)")


def load_seed(
    tenant: FakeTenant,
    path: Union[str, Path] = DEFAULT_SEED_PATH,
    now: Optional[float] = None,
    clients: bool = True,
) -> Seed:
    """Load the fixture into ``tenant`` (users, logs, and unless
    ``clients=False`` the test applications). Dates resolve against ``now``
    (default: the tenant's clock). Returns a ``Seed``."""
    fixture = load_fixture(path)
    if now is None:
        now = tenant.now()
    if clients:
        add_test_clients(tenant)
    for spec in fixture.get("users", []):
        spec = copy.deepcopy(spec)
        for key in ("created_at", "updated_at", "last_login"):
            if isinstance(spec.get(key), str):
                spec[key] = resolve_date(spec[key], now)
        user_id = spec.pop("user_id")
        tenant.add_user(
            user_id,
            name=spec.pop("name", None),
            email=spec.pop("email", None),
            app_metadata=spec.pop("app_metadata", None),
            **spec,
        )
    refs: Dict[str, str] = {}
    for spec in fixture.get("logs", []):
        log = copy.deepcopy(spec)
        ref = log.pop("ref", None)
        if isinstance(log.get("date"), str):
            log["date"] = resolve_date(log["date"], now)
        log_id = tenant.add_log(log)
        if ref is not None:
            if ref in refs:
                raise ValueError(f"duplicate ref {ref!r} in {path}")
            refs[ref] = log_id
    return Seed(fixture, refs, now)


# --------------------------------------------------------------------------
# synthetic activity for benchmarks


class Activity:
    """What ``generate_activity`` added (computed by the generator itself).

    ``late``: how many logs are dated before the log just ahead of them in
    log_id order."""

    def __init__(self) -> None:
        self.log_ids: List[str] = []
        self.by_type: collections.Counter[str] = collections.Counter()
        self.users: List[str] = []
        self.signups = 0
        self.logins = 0
        self.late = 0


_APPS = [
    ("bN7tQ2xLmV9rK4pW1sYc6ZgH3dJ8aEfU", "Acme Web"),
    ("hT5yU2iO9pA4sD7fG1jK3lZ6xC8vB0nM", "Acme Mobile (iOS)"),
    ("qW3eR6tY9uI2oP5aS8dF1gH4jK7lZ0xC", "Acme Support Desk"),
]
_UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
]
_DB = ("Username-Password-Authentication", "con_GenDb0000000001", "auth0", "database")
_GOOGLE = ("google-oauth2", "con_GenGoogle000001", "google-oauth2", "social")


def generate_activity(
    tenant: FakeTenant,
    n_logs: int,
    users: int = 1000,
    seed: int = 0,
    days: float = 3.0,
    existing_ratio: float = 0.5,
    failure_ratio: float = 0.08,
    add_users: bool = True,
    late_ratio: float = 0.05,
    max_lateness: float = 20.0,
) -> Activity:
    """Add ``n_logs`` deterministic synthetic logs spread evenly over the
    last ``days`` days: mostly ``s`` repeat logins, database signups
    (``ss`` then ``s`` with loginsCount 1), first social logins, and some
    ``fp``/``fu`` failures, for ``users`` users (``existing_ratio`` of them
    existed before, with login counts > 1). Every ``s`` carries a login
    count. Users are added to the tenant unless ``add_users=False``.

    Dates out of log_id order: Auth0 orders checkpoint reads by log_id and
    does not promise that dates follow. ``late_ratio`` of the logs are dated
    between 1 and ``max_lateness`` logs' worth of time earlier than their
    place (a small skew: within the 100 logs of a page), but never before
    the first log of the batch, so the oldest log by date is still the first
    by log_id. ``late_ratio=0`` keeps dates in log_id order."""
    rng = random.Random(seed)
    skew = random.Random(f"late-{seed}")  # its own stream: the activity is the same with or without skew
    now = tenant.now()
    start = now - days * 86400.0
    step = (now - start) / max(1, n_logs)
    activity = Activity()

    people = []
    for index in range(users):
        social = rng.random() < 0.3
        conn = _GOOGLE if social else _DB
        ident = f"{index + 1:024x}" if not social else f"1{index + 1:020d}"
        user_id = "{}|{}".format("google-oauth2" if social else "auth0", ident)
        existing = rng.random() < existing_ratio
        count = rng.randint(2, 300) if existing else 0
        email = f"user{index + 1:06d}@example.com"
        people.append({"user_id": user_id, "email": email, "conn": conn, "count": count, "signed_up": existing})
        activity.users.append(user_id)
        if add_users:
            tenant.add_user(
                user_id,
                name=f"User {index + 1:06d}",
                email=email,
                app_metadata={"signedUp": True} if existing else None,
                logins_count=count,
            )

    logs: List[Dict[str, Any]] = []
    pending: List[Dict[str, Any]] = []  # the `s` that follows a signup
    seen: set = set()
    previous = start
    for n in range(n_logs):
        moment = start + n * step
        if n and skew.random() < late_ratio:
            moment -= min(skew.uniform(1.0, max_lateness), n - 0.5) * step
        if moment < previous:
            activity.late += 1
        previous = moment
        when = iso_ms(moment)
        client_id, client_name = _APPS[rng.randrange(len(_APPS))]
        follow_up = bool(pending)
        person = pending.pop() if follow_up else people[rng.randrange(len(people))]
        conn, conn_id, strategy, strategy_type = person["conn"]
        base = {
            "date": when,
            "connection": conn,
            "connection_id": conn_id,
            "client_id": client_id,
            "client_name": client_name,
            "ip": f"198.51.100.{1 + n % 250}",
            "user_agent": _UAS[n % len(_UAS)],
            "hostname": "acme-bench.eu.auth0.com",
            "user_id": person["user_id"],
            "user_name": person["email"],
            "strategy": strategy,
            "strategy_type": strategy_type,
        }
        if follow_up:
            person["count"] += 1
            log = dict(base, type="s", description="", details=_login_details(person, 1))
            activity.logins += 1  # known since its ss
        elif rng.random() < failure_ratio:
            kind = "fp" if rng.random() < 0.7 else "fu"
            log = dict(
                base,
                type=kind,
                description="Wrong email or password.",
                details={"error": {"message": "Wrong email or password."}},
            )
        elif not person["signed_up"] and person["conn"] is _DB:
            person["signed_up"] = True
            log = dict(
                base,
                type="ss",
                description="",
                details={
                    "body": {
                        "connection": conn,
                        "email": person["email"],
                        "password": "*****",
                        "transaction": {"protocol": "oidc-basic-profile", "locale": "en"},
                    }
                },
            )
            activity.signups += 1
            seen.add(person["user_id"])
            pending.append(person)
        else:
            person["signed_up"] = True
            person["count"] += 1
            log = dict(base, type="s", description="", details=_login_details(person, person["count"]))
            if person["user_id"] in seen or person["count"] > 1:
                activity.logins += 1
            else:
                activity.signups += 1
            seen.add(person["user_id"])
        logs.append(log)
        activity.by_type[log["type"]] += 1
    activity.log_ids = tenant.add_logs(logs, copy_logs=False)
    return activity


def _login_details(person: Dict[str, Any], count: int) -> Dict[str, Any]:
    conn, conn_id, strategy, _ = person["conn"]
    prompt = "federated-authenticate" if strategy != "auth0" else "prompt-authenticate"
    return {
        "prompts": [
            {
                "name": prompt,
                "connection": conn,
                "connection_id": conn_id,
                "strategy": strategy,
                "identity": person["user_id"].split("|", 1)[1],
                "stats": {"loginsCount": count},
                "elapsedTime": 850,
            },
            {
                "name": "login",
                "flow": "universal-login",
                "user_id": person["user_id"],
                "user_name": person["email"],
                "elapsedTime": 4100,
            },
        ],
        "elapsedTime": 4300,
    }
