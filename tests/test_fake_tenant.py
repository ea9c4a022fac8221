"""Tests of the fake Auth0 tenant itself (tests/fakes), not of the add-on.

The add-on's tests trust this fake to behave like Auth0; these check that it
does what PLATFORM.md says Auth0 does, over real HTTPS with ``requests``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.fakes.certs import make_test_ca
from tests.fakes.ratelimit import (
    RESET_FULL,
    RESET_NEXT,
    Bucket,
    free_plan,
    paid_plan,
    separate_buckets,
    shared_bucket,
)
from tests.fakes.seed import (
    LOGS_ONLY_CLIENT_ID,
    LOGS_ONLY_CLIENT_SECRET,
    MAIN_CLIENT_ID,
    MAIN_CLIENT_SECRET,
    NO_GRANT_CLIENT_ID,
    NO_GRANT_CLIENT_SECRET,
    generate_activity,
    load_fixture,
    load_seed,
    resolve_date,
)
from tests.fakes.tenant import FakeTenant, iso_ms, parse_iso

REPO = Path(__file__).resolve().parent.parent

try:
    import requests
except ImportError:  # the dev venvs may lack it; the vendored lib/ has it
    if not (REPO / "lib" / "requests").is_dir():
        raise ImportError("tests/test_fake_tenant.py needs requests: build lib/ (make lib) or pip install it") from None
    sys.path.append(str(REPO / "lib"))
    import requests

ALICE = "auth0|65f0a1b2c3d4e5f601a1c001"
FRANK = "auth0|65f0a1b2c3d4e5f601a1c006"
GRACE = "google-oauth2|100200300400500600700"


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory):
    return make_test_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def tenant(test_ca):
    with FakeTenant(ca=test_ca, log_token_exchanges=False) as fake:
        fake.seed = load_seed(fake)
        yield fake


def session(tenant):
    s = requests.Session()
    s.verify = tenant.ca_bundle
    s.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would beat s.verify
    return s


def token_for(tenant, s, client_id=MAIN_CLIENT_ID, secret=MAIN_CLIENT_SECRET):
    r = s.post(
        tenant.base_url + "/oauth/token",
        json={
            "client_id": client_id,
            "client_secret": secret,
            "audience": tenant.audience,
            "grant_type": "client_credentials",
        },
    )
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def api(tenant, client_id=MAIN_CLIENT_ID, secret=MAIN_CLIENT_SECRET):
    s = session(tenant)
    s.headers["Authorization"] = "Bearer " + token_for(tenant, s, client_id, secret)
    return s


# ---- /oauth/token ---------------------------------------------------------


def test_token_flow_json_and_form(tenant):
    s = session(tenant)
    r = s.post(
        tenant.base_url + "/oauth/token",
        json={
            "client_id": MAIN_CLIENT_ID,
            "client_secret": MAIN_CLIENT_SECRET,
            "audience": tenant.audience,
            "grant_type": "client_credentials",
        },
    )
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 86400
    assert set(body["scope"].split()) == {"read:logs", "read:logs_users", "read:users", "update:users_app_metadata"}
    r = s.post(
        tenant.base_url + "/oauth/token",
        data={
            "client_id": MAIN_CLIENT_ID,
            "client_secret": MAIN_CLIENT_SECRET,
            "audience": tenant.audience,
            "grant_type": "client_credentials",
        },
    )
    assert r.status_code == 200 and r.json()["access_token"] != body["access_token"]
    assert tenant.tokens_issued == 2
    assert tenant.calls[("POST", "token")] == 2


def test_token_errors(tenant):
    s = session(tenant)
    url = tenant.base_url + "/oauth/token"
    base = {
        "client_id": MAIN_CLIENT_ID,
        "client_secret": MAIN_CLIENT_SECRET,
        "audience": tenant.audience,
        "grant_type": "client_credentials",
    }
    r = s.post(url, json=dict(base, client_secret="wrong"))
    assert r.status_code == 401 and r.json() == {"error": "access_denied", "error_description": "Unauthorized"}
    r = s.post(url, json=dict(base, audience="https://elsewhere.example/api/v2/"))
    assert r.status_code == 403
    assert r.json()["error_description"] == "Service not enabled within domain: https://elsewhere.example/api/v2/"
    r = s.post(url, json=dict(base, client_id=NO_GRANT_CLIENT_ID, client_secret=NO_GRANT_CLIENT_SECRET))
    assert r.status_code == 403 and "client-grant" in r.json()["error_description"]
    assert tenant.tokens_issued == 0


def test_token_exchange_is_logged_when_enabled(test_ca):
    with FakeTenant(ca=test_ca) as fake:
        load_seed(fake)
        api(fake)
        assert fake.logs[-1]["type"] == "seccft"
        assert fake.logs[-1]["client_id"] == MAIN_CLIENT_ID


# ---- authorisation ----------------------------------------------------------


def test_api_requires_live_token(tenant):
    s = session(tenant)
    r = s.get(tenant.base_url + "/api/v2/logs")
    assert r.status_code == 401
    assert r.json() == {
        "statusCode": 401,
        "error": "Unauthorized",
        "message": "Invalid token",
        "attributes": {"error": "Invalid token"},
    }
    assert "X-RateLimit-Limit" in r.headers
    s = api(tenant)
    assert s.get(tenant.base_url + "/api/v2/logs").status_code == 200
    tenant.revoke_tokens()
    assert s.get(tenant.base_url + "/api/v2/logs").status_code == 401


def test_token_expires(test_ca):
    now = [1_800_000_000.0]
    with FakeTenant(ca=test_ca, clock=lambda: now[0]) as fake:
        fake.add_client("short", "secret", token_lifetime=60)
        s = api(fake, "short", "secret")
        assert s.get(fake.base_url + "/api/v2/logs").status_code == 200
        now[0] += 61
        assert s.get(fake.base_url + "/api/v2/logs").status_code == 401


def test_missing_scope_is_refused_as_auth0_words_it(tenant):
    # Auth0's 403 lists every scope its API reference gives the endpoint.
    s = api(tenant, LOGS_ONLY_CLIENT_ID, LOGS_ONLY_CLIENT_SECRET)
    assert s.get(tenant.base_url + "/api/v2/logs").status_code == 200
    r = s.get(tenant.base_url + "/api/v2/users/" + ALICE)
    assert r.status_code == 403
    assert r.json() == {
        "statusCode": 403,
        "error": "Forbidden",
        "errorCode": "insufficient_scope",
        "message": "Insufficient scope, expected any of: read:users,read:current_user,read:user_idp_tokens",
    }
    r = s.patch(tenant.base_url + "/api/v2/users/" + ALICE, json={"app_metadata": {"signedUp": True}})
    assert r.status_code == 403
    assert r.json()["message"] == (
        "Insufficient scope, expected any of: update:users,update:users_app_metadata,update:current_user_metadata"
    )
    tenant.add_client("no-logs", "no-logs-secret", scopes=["read:users"])
    r = api(tenant, "no-logs", "no-logs-secret").get(tenant.base_url + "/api/v2/logs")
    assert r.status_code == 403
    assert r.json()["message"] == "Insufficient scope, expected any of: read:logs,read:logs_users"
    assert tenant.patches == []


@pytest.mark.parametrize(
    "scope, call, status",
    [
        ("read:logs", "logs", 200),
        ("read:logs_users", "logs", 200),
        ("read:users", "user", 200),
        ("read:user_idp_tokens", "user", 200),
        ("read:current_user", "user", 403),  # a client token is no user: "current user" is nobody
        ("update:users", "flag", 200),
        ("update:users_app_metadata", "flag", 200),
        ("update:current_user_metadata", "flag", 403),
        ("update:users_app_metadata", "name", 403),  # other fields need update:users
        ("update:users", "name", 200),
    ],
)
def test_any_scope_listed_for_an_endpoint_grants_it(tenant, scope, call, status):
    tenant.add_client("one-scope", "one-scope-secret", scopes=[scope])
    s = api(tenant, "one-scope", "one-scope-secret")
    user_url = tenant.base_url + "/api/v2/users/" + ALICE
    send = {
        "logs": lambda: s.get(tenant.base_url + "/api/v2/logs", params={"per_page": 1}),
        "user": lambda: s.get(user_url),
        "flag": lambda: s.patch(user_url, json={"app_metadata": {"signedUp": True}}),
        "name": lambda: s.patch(user_url, json={"name": "Alice M."}),
    }[call]
    r = send()
    assert r.status_code == status, r.text
    if status == 403:
        assert r.json()["errorCode"] == "insufficient_scope"


# ---- logs -----------------------------------------------------------------


def test_checkpoint_pages_follow_link_in_log_id_order(tenant):
    s = api(tenant)
    all_ids = [log["log_id"] for log in tenant.logs]
    assert all(len(i) == 56 and i.isdigit() for i in all_ids) and all_ids == sorted(all_ids)
    seen = []
    url = tenant.base_url + f"/api/v2/logs?from={all_ids[0]}&take=25&per_page=5&page=3&q=type:fp"
    while True:
        r = s.get(url)
        assert r.status_code == 200
        page = r.json()
        assert isinstance(page, list) and len(page) <= 25
        if not page:
            assert "Link" not in r.headers
            break
        seen.extend(log["log_id"] for log in page)
        assert r.headers["Link"] == '<https://{}/api/v2/logs?from={}&take=25>; rel="next"'.format(
            tenant.domain, page[-1]["log_id"]
        )
        url = r.links["next"]["url"]
    assert seen == all_ids[1:]  # everything after `from`, once, in order
    assert s.get(tenant.base_url + "/api/v2/logs", params={"from": all_ids[0]}).json()[0]["log_id"] == all_ids[1]
    assert len(s.get(tenant.base_url + "/api/v2/logs", params={"from": all_ids[0]}).json()) == 50
    assert s.get(tenant.base_url + "/api/v2/logs", params={"from": all_ids[0], "take": 101}).status_code == 400


def test_from_out_of_retention_is_400(tenant):
    s = api(tenant)
    ids = [log["log_id"] for log in tenant.logs]
    cutoff = iso_ms(tenant.now() - 3 * 86400)
    purged = tenant.purge_before(cutoff)
    assert purged > 5 and tenant.logs[0]["log_id"] == ids[purged]
    assert all(parse_iso(log["date"]) >= parse_iso(cutoff) for log in tenant.logs)
    for stale in (ids[0], ids[purged - 1], "1" + "0" * 55):
        r = s.get(tenant.base_url + "/api/v2/logs", params={"from": stale, "take": 100})
        assert r.status_code == 400, stale
        assert r.json()["statusCode"] == 400 and r.json()["errorCode"] == "invalid_query_string"
    r = s.get(tenant.base_url + "/api/v2/logs", params={"from": ids[purged], "take": 100})
    assert r.status_code == 200 and r.json()[0]["log_id"] == ids[purged + 1]
    unknown = str(int(ids[purged + 3]) + 5)  # not a real id, but within retention: sort order decides
    assert unknown not in ids
    r = s.get(tenant.base_url + "/api/v2/logs", params={"from": unknown, "take": 1})
    assert r.status_code == 200 and r.json()[0]["log_id"] == min(i for i in ids if i > unknown)


def test_search_mode(tenant):
    s = api(tenant)
    logs = tenant.logs
    url = tenant.base_url + "/api/v2/logs"
    r = s.get(url, params={"sort": "date:1", "per_page": 1, "page": 0})
    assert r.status_code == 200 and [x["log_id"] for x in r.json()] == [logs[0]["log_id"]]
    r = s.get(url, params={"sort": "date:-1", "per_page": 2, "page": 0, "include_totals": "true"})
    body = r.json()
    assert body["start"] == 0 and body["limit"] == 2 and body["length"] == 2 and body["total"] == len(logs)
    assert [x["log_id"] for x in body["logs"]] == [logs[-1]["log_id"], logs[-2]["log_id"]]
    pivot = logs[10]["date"]
    r = s.get(url, params={"q": f"date:[{pivot} TO *]", "sort": "date:1", "per_page": 100})
    assert [x["log_id"] for x in r.json()] == [x["log_id"] for x in logs[10:]]  # inclusive
    r = s.get(url, params={"q": f'date:[* TO "{pivot}"]', "sort": "date:1", "per_page": 100})
    assert [x["log_id"] for x in r.json()] == [x["log_id"] for x in logs[:11]]
    r = s.get(
        url,
        params={
            "q": "date:[{} TO {}] AND type:s".format(logs[5]["date"], logs[20]["date"]),
            "sort": "date:1",
            "per_page": 100,
        },
    )
    assert [x["log_id"] for x in r.json()] == [x["log_id"] for x in logs[5:21] if x["type"] == "s"]
    assert s.get(url, params={"per_page": 101}).status_code == 400
    assert s.get(url, params={"per_page": 100, "page": 9}).status_code == 200
    r = s.get(url, params={"per_page": 100, "page": 10})
    assert r.status_code == 400 and "1000" in r.json()["message"]
    assert s.get(url, params={"q": "date:[nonsense TO *]"}).status_code == 400


# ---- users ----------------------------------------------------------------


def test_get_user(tenant):
    s = api(tenant)
    r = s.get(tenant.base_url + "/api/v2/users/" + GRACE)
    assert r.status_code == 200
    assert r.json()["app_metadata"] == {"signedUp": True, "roles": ["admin"], "prefs": {"theme": "dark", "lang": "fr"}}
    r = s.get(tenant.base_url + "/api/v2/users/" + ALICE)
    assert "app_metadata" not in r.json()  # Auth0 omits an empty app_metadata
    r = s.get(
        tenant.base_url + "/api/v2/users/" + GRACE, params={"fields": "user_id,app_metadata", "include_fields": "true"}
    )
    assert set(r.json()) == {"user_id", "app_metadata"}
    r = s.get(tenant.base_url + "/api/v2/users/" + "auth0%7C65f0a1b2c3d4e5f601a1cd01")  # deleted since
    assert r.status_code == 404
    assert r.json() == {
        "statusCode": 404,
        "error": "Not Found",
        "message": "The user does not exist.",
        "errorCode": "inexistent_user",
    }


def test_patch_app_metadata_semantics(tenant):
    s = api(tenant)
    url = tenant.base_url + "/api/v2/users/" + GRACE
    logs_before = tenant.log_count
    r = s.patch(url, json={"app_metadata": {"signedUp": True}})
    assert r.status_code == 200
    assert r.json()["app_metadata"] == {"signedUp": True, "roles": ["admin"], "prefs": {"theme": "dark", "lang": "fr"}}
    s.patch(url, json={"app_metadata": {"prefs": {"theme": "light"}}})  # nested object: replaced wholesale
    assert tenant.user(GRACE)["app_metadata"] == {"signedUp": True, "roles": ["admin"], "prefs": {"theme": "light"}}
    s.patch(url, json={"app_metadata": {"roles": None}})  # null deletes the key
    assert tenant.user(GRACE)["app_metadata"] == {"signedUp": True, "prefs": {"theme": "light"}}
    s.patch(url, json={"app_metadata": {}})  # {} wipes everything
    assert "app_metadata" not in tenant.user(GRACE)
    assert [body for _, body in tenant.patches] == [
        {"app_metadata": {"signedUp": True}},
        {"app_metadata": {"prefs": {"theme": "light"}}},
        {"app_metadata": {"roles": None}},
        {"app_metadata": {}},
    ]
    new_logs = tenant.logs[logs_before:]
    assert [(x["type"], x["description"]) for x in new_logs] == [("sapi", "Update a user")] * 4
    r = s.patch(tenant.base_url + "/api/v2/users/github%7C4040404", json={"app_metadata": {"signedUp": True}})
    assert r.status_code == 404 and r.json()["errorCode"] == "inexistent_user"
    assert s.patch(url, json={"name": "x"}).status_code == 403  # needs update:users


# ---- rate limits, faults, connections -------------------------------------


def test_rate_limit_429_carries_auth0s_three_headers_only(tenant):
    s = api(tenant)
    tenant.set_rate_limit("logs", limit=2, per_seconds=60.0)
    url = tenant.base_url + "/api/v2/logs"
    first = s.get(url)
    assert first.headers["X-RateLimit-Limit"] == "2" and first.headers["X-RateLimit-Remaining"] == "1"
    assert s.get(url).headers["X-RateLimit-Remaining"] == "0"
    r = s.get(url)
    assert r.status_code == 429
    assert r.json() == {
        "statusCode": 429,
        "error": "Too Many Requests",
        "message": "Global limit has been reached",
        "errorCode": "too_many_requests",
    }
    assert r.headers["X-RateLimit-Limit"] == "2" and r.headers["X-RateLimit-Remaining"] == "0"
    assert "Retry-After" not in r.headers
    # Empty, refilled at 2 a minute: full again in 60 s (epoch seconds, rounded up).
    reset = int(r.headers["X-RateLimit-Reset"])
    assert time.time() + 58 < reset <= time.time() + 61
    assert s.get(tenant.base_url + "/api/v2/users/" + FRANK).status_code == 200  # other groups unaffected
    tenant.set_rate_limit("global", limit=1, per_seconds=60.0)
    assert s.get(tenant.base_url + "/api/v2/users/" + FRANK).status_code == 200
    assert s.get(tenant.base_url + "/api/v2/users/" + FRANK).status_code == 429
    assert tenant.throttled == 2
    stats = tenant.rate_limit_stats
    assert (stats["logs"].taken, stats["logs"].refused) == (2, 1)
    assert (stats["global"].taken, stats["global"].refused) == (1, 1)


def clocked_tenant(test_ca, now, **kwargs):
    """A tenant on a clock the test moves (now is a one-item list)."""
    fake = FakeTenant(ca=test_ca, clock=lambda: now[0], log_token_exchanges=False, **kwargs)
    fake.add_client(MAIN_CLIENT_ID, MAIN_CLIENT_SECRET)
    return fake


@pytest.mark.parametrize(
    "reset, after_one, after_ten",
    [
        # Bucket of 10 refilled at 5/s, clock at T+0.5: one request's worth
        # comes back in 0.2 s, the whole bucket in 0.2 s per missing request.
        (RESET_FULL, 1_800_000_001, 1_800_000_003),  # ceil(T+0.7), ceil(T+2.5)
        (RESET_NEXT, 1_800_000_001, 1_800_000_001),  # ceil(T+0.7) both times
    ],
)
def test_reset_header_says_when_the_bucket_is_full_or_the_next_request_is_back(test_ca, reset, after_one, after_ten):
    now = [1_800_000_000.5]
    with clocked_tenant(test_ca, now, rate_limits=separate_buckets(logs=(10, 5.0)), reset=reset) as fake:
        s = api(fake)
        url = fake.base_url + "/api/v2/logs"
        r = s.get(url)
        assert (r.headers["X-RateLimit-Remaining"], int(r.headers["X-RateLimit-Reset"])) == ("9", after_one)
        for _ in range(9):
            r = s.get(url)
        assert r.status_code == 200
        assert (r.headers["X-RateLimit-Remaining"], int(r.headers["X-RateLimit-Reset"])) == ("0", after_ten)
        refused = s.get(url)
        assert refused.status_code == 429 and "Retry-After" not in refused.headers
        assert (refused.headers["X-RateLimit-Remaining"], int(refused.headers["X-RateLimit-Reset"])) == ("0", after_ten)
        now[0] += 0.2  # one request's worth is back
        assert s.get(url).status_code == 200
        assert s.get(url).status_code == 429
        assert fake.throttled == 2


def test_paid_plan_keeps_logs_user_reads_and_user_writes_apart(test_ca):
    now = [1_800_000_000.0]
    with clocked_tenant(test_ca, now, rate_limits=paid_plan()) as fake:
        fake.add_user(ALICE, email="alice@example.com")
        s = api(fake)
        logs, user = fake.base_url + "/api/v2/logs", fake.base_url + "/api/v2/users/" + ALICE
        assert {b.name: (b.burst, round(b.per_second * 60)) for b in fake.rate_limits} == {
            "logs": (10, 100),
            "users_read": (40, 500),
            "users_write": (20, 200),
        }
        assert [s.get(logs).status_code for _ in range(11)] == [200] * 10 + [429]
        assert [s.get(user).status_code for _ in range(41)] == [200] * 40 + [429]
        flag = {"app_metadata": {"signedUp": True}}
        assert [s.patch(user, json=flag).status_code for _ in range(21)] == [200] * 20 + [429]
        assert s.get(user).headers["X-RateLimit-Limit"] == "40"


def test_free_plan_is_one_bucket_for_the_whole_management_api(test_ca):
    now = [1_800_000_000.0]
    with clocked_tenant(test_ca, now, rate_limits=free_plan()) as fake:
        fake.add_user(ALICE, email="alice@example.com")
        s = api(fake)  # /oauth/token is the Authentication API: not counted
        logs, user = fake.base_url + "/api/v2/logs", fake.base_url + "/api/v2/users/" + ALICE
        assert [s.get(logs).status_code, s.get(user).status_code] == [200, 200]
        assert s.patch(user, json={"app_metadata": {"signedUp": True}}).status_code == 429
        assert s.get(logs).status_code == 429
        now[0] += 0.5  # 2 a second: one request back
        r = s.get(user)
        assert r.status_code == 200 and r.headers["X-RateLimit-Limit"] == "2"
        assert s.get(logs).status_code == 429


def test_separate_buckets_share_one_between_user_reads_and_writes(test_ca):
    now = [1_800_000_000.0]
    buckets = separate_buckets(logs=(2, 5.0), users=(3, 10.0))
    with clocked_tenant(test_ca, now, rate_limits=buckets) as fake:
        fake.add_user(ALICE, email="alice@example.com")
        s = api(fake)
        user = fake.base_url + "/api/v2/users/" + ALICE
        flag = {"app_metadata": {"signedUp": True}}
        assert [s.get(user).status_code, s.patch(user, json=flag).status_code, s.get(user).status_code] == [200] * 3
        assert s.patch(user, json=flag).status_code == 429
        assert [s.get(fake.base_url + "/api/v2/logs").status_code for _ in range(3)] == [200, 200, 429]
        assert {name: (st.taken, st.refused) for name, st in fake.rate_limit_stats.items()} == {
            "logs": (2, 1),
            "users": (3, 1),
        }
    with clocked_tenant(test_ca, now, rate_limits=shared_bucket(burst=3, per_second=1.0)) as fake:
        s = api(fake)
        assert [s.get(fake.base_url + "/api/v2/logs").status_code for _ in range(4)] == [200] * 3 + [429]


def test_bucket_rejects_nonsense():
    with pytest.raises(ValueError):
        Bucket("x", ("logs",), burst=0, per_second=1.0)
    with pytest.raises(ValueError):
        Bucket("x", ("nope",), burst=1, per_second=1.0)


def test_injected_429_has_the_rate_limit_headers_and_retry_after_only_on_request(tenant):
    s = api(tenant)
    url = tenant.base_url + "/api/v2/logs"
    tenant.fail_next("logs", 429)
    r = s.get(url)
    assert r.status_code == 429 and "Retry-After" not in r.headers
    assert r.headers["X-RateLimit-Remaining"] == "0"
    assert time.time() <= int(r.headers["X-RateLimit-Reset"]) <= time.time() + 2
    tenant.fail_next("logs", 429, headers={"Retry-After": "7", "X-RateLimit-Reset": "1800000000"})
    r = s.get(url)
    assert r.status_code == 429 and r.headers["Retry-After"] == "7"
    assert r.headers["X-RateLimit-Reset"] == "1800000000" and r.headers["X-RateLimit-Remaining"] == "0"
    tenant.fail_next("logs", 429, reset_in=30)
    served = time.time()
    r = s.get(url)
    assert served + 30 <= int(r.headers["X-RateLimit-Reset"]) <= time.time() + 31
    assert tenant.throttled == 3


def test_request_log_has_arrival_time_and_the_tokens_application(tenant):
    tenant.add_client("other-app", "other-app-secret")
    started = time.time()
    main, other = api(tenant), api(tenant, "other-app", "other-app-secret")
    main.get(tenant.base_url + "/api/v2/logs", params={"per_page": 1})
    other.get(tenant.base_url + "/api/v2/users/" + ALICE)
    session(tenant).get(tenant.base_url + "/api/v2/logs")  # no token: 401
    log = tenant.request_log
    assert [(r.method, r.group, r.status, r.client_id) for r in log] == [
        ("POST", "token", 200, None),
        ("POST", "token", 200, None),
        ("GET", "logs", 200, MAIN_CLIENT_ID),
        ("GET", "users_read", 200, "other-app"),
        ("GET", "logs", 401, None),
    ]
    assert all(started <= r.at <= time.time() for r in log)
    assert [r.at for r in log] == sorted(r.at for r in log)
    assert [(r.method, r.path, r.status) for r in log] == tenant.requests


def test_fault_injection(tenant):
    s = api(tenant)
    url = tenant.base_url + "/api/v2/logs"
    tenant.fail_next("logs", 503, times=2)
    tenant.fail_next("users_read", None)
    assert [s.get(url).status_code for _ in range(3)] == [503, 503, 200]
    with pytest.raises(requests.ConnectionError):
        s.get(tenant.base_url + "/api/v2/users/" + FRANK)
    assert s.get(tenant.base_url + "/api/v2/users/" + FRANK).status_code == 200
    tenant.fail_next("*", 502, body="upstream down")
    r = s.get(url)
    assert r.status_code == 502 and r.text == "upstream down"
    assert tenant.calls[("GET", "logs")] == 4 and tenant.calls[("GET", "users_read")] == 2
    assert ("GET", "/api/v2/users/" + FRANK.replace("|", "%7C"), None) in tenant.requests


def test_keep_alive_reuses_one_connection(tenant):
    s = api(tenant)  # the token request opens the connection
    for _ in range(3):
        assert s.get(tenant.base_url + "/api/v2/logs", params={"per_page": 1}).status_code == 200
    assert tenant.connections == 1
    session(tenant).get(tenant.base_url + "/api/v2/logs")
    assert tenant.connections == 2


# ---- seed fixture and generator ---------------------------------------------


def test_fixture_is_consistent():
    fixture = load_fixture()
    logs = fixture["logs"]
    refs = [log["ref"] for log in logs]
    assert len(set(refs)) == len(refs)
    now = 1_800_000_000.0
    dates = [parse_iso(resolve_date(log["date"], now)) for log in logs]
    assert dates == sorted(dates), "fixture logs must be chronological"
    events = fixture["expected"]["events"]
    assert set(events) == {log["ref"] for log in logs if log["type"] in ("s", "ss")}
    assert set(events.values()) == {"Signup", "Login"}
    counts = Counter(events.values())
    assert counts["Signup"] == fixture["expected"]["signups"] and counts["Login"] == fixture["expected"]["logins"]
    assert len(logs) >= 60 and len(events) >= 40
    users = {u["user_id"] for u in fixture["users"]}
    in_logs = {log.get("user_id") for log in logs} - {None, ""}
    deleted = set(fixture["expected"]["deleted_users"])
    assert deleted <= in_logs and not deleted & users
    assert set(fixture["expected"]["app_metadata_after"]) == users


def test_load_seed_maps_expectations_to_log_ids(tenant):
    seed = tenant.seed
    assert len(seed.expected) == seed.signups + seed.logins == 50
    for log_id, kind in seed.expected.items():
        assert tenant.log(log_id)["type"] in ("s", "ss") and kind in ("Signup", "Login")
    assert list(seed.expected) == sorted(seed.expected)
    oldest = parse_iso(tenant.logs[0]["date"])
    assert tenant.now() - 5 * 86400 < oldest < tenant.now() - 3 * 86400


def test_generate_activity_is_deterministic(test_ca):
    # How fast it is, is for `make bench` to print (tests assert behaviour).
    with FakeTenant(ca=test_ca, log_token_exchanges=False) as fake:
        fake.add_client(MAIN_CLIENT_ID, MAIN_CLIENT_SECRET)
        activity = generate_activity(fake, 20000, users=300, seed=7)
        assert fake.log_count == 20000 and activity.by_type["s"] > 15000 and activity.by_type["ss"] > 0
        assert activity.signups + activity.logins == activity.by_type["s"] + activity.by_type["ss"]
        s = api(fake)
        ids = activity.log_ids
        r = s.get(fake.base_url + "/api/v2/logs", params={"from": ids[10000], "take": 100})
        assert [x["log_id"] for x in r.json()] == ids[10001:10101]
    runs = []
    for late_ratio in (0.05, 0.05, 0.0):
        with FakeTenant(ca=test_ca, log_token_exchanges=False) as other:
            generate_activity(other, 300, users=50, seed=7, late_ratio=late_ratio)
            runs.append([(x["type"], x.get("user_id")) for x in other.logs])
    assert runs[0] == runs[1] == runs[2]  # the skew moves dates only


def test_generated_dates_are_sometimes_out_of_log_id_order(test_ca):
    with FakeTenant(ca=test_ca, log_token_exchanges=False) as fake:
        fake.add_client(MAIN_CLIENT_ID, MAIN_CLIENT_SECRET)
        activity = generate_activity(fake, 3000, users=200, seed=3, days=1.0, max_lateness=20)
        logs = fake.logs  # log_id order
        times = [parse_iso(log["date"]) for log in logs]
        step = 86400.0 / 3000
        late = [i for i in range(1, len(times)) if times[i] < times[i - 1]]
        assert 3000 * 0.02 < len(late) == activity.late < 3000 * 0.1
        # Small skew: never more than 20 logs' worth of time, never before the first log.
        assert all(times[i] >= i * step + times[0] - 20 * step - 0.002 for i in range(len(times)))
        assert min(times) == times[0]
        # Search mode sorts by date, checkpoint mode by log_id.
        s = api(fake)
        by_date = s.get(fake.base_url + "/api/v2/logs", params={"sort": "date:1", "per_page": 100}).json()
        assert [parse_iso(x["date"]) for x in by_date] == sorted(times)[:100]
        assert [x["log_id"] for x in by_date] != [x["log_id"] for x in logs[:100]]
        by_id = s.get(fake.base_url + "/api/v2/logs", params={"from": logs[0]["log_id"], "take": 100}).json()
        assert [x["log_id"] for x in by_id] == [x["log_id"] for x in logs[1:101]]
    with FakeTenant(ca=test_ca, log_token_exchanges=False) as fake:
        generate_activity(fake, 500, users=50, late_ratio=0.0)
        times = [parse_iso(log["date"]) for log in fake.logs]
        assert times == sorted(times)


# ---- CLI (make demo) --------------------------------------------------------


def test_cli_serves_until_sigterm(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.tenant", "--dir", str(tmp_path)],
        cwd=str(REPO),
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        info = json.loads(proc.stdout.readline())
        assert info["domain"].startswith("127.0.0.1:") and info["client_id"] == MAIN_CLIENT_ID
        s = requests.Session()
        s.verify, s.trust_env = info["ca_bundle"], False
        users = s.get("https://{}/__fake__/users".format(info["domain"])).json()
        assert any(u["user_id"] == ALICE for u in users)
        calls = s.get("https://{}/__fake__/calls".format(info["domain"])).json()
        assert "calls" in calls
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
