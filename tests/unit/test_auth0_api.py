"""The Auth0 client against the fake tenant over HTTPS: the token and its
cache, log and user calls as Auth0 receives them, and what every kind of
failure becomes (the error type, what its message tells the admin, and how
many requests reached the tenant). Nothing here waits more than a fraction
of a second: the retries that sleep a whole back-off are the `slow`
end-to-end tests' (tests/e2e/test_faults.py)."""

from __future__ import annotations

import logging
import math
import socket
import time
from urllib.parse import parse_qsl, urlsplit

import pytest

from ta_auth0.auth0_api import (
    MAX_WAIT,
    TOKEN_RENEW_MARGIN,
    Auth0AuthError,
    Auth0Client,
    Auth0RequestError,
    Auth0ScopeError,
    Auth0Unavailable,
    CheckpointExpired,
    MemoryTokenCache,
    RateLimited,
    UserNotFound,
)
from ta_auth0.state import CachedToken
from tests.fakes.seed import (
    LOGS_ONLY_CLIENT_ID,
    LOGS_ONLY_CLIENT_SECRET,
    MAIN_CLIENT_ID,
    MAIN_CLIENT_SECRET,
    NO_GRANT_CLIENT_ID,
    NO_GRANT_CLIENT_SECRET,
    add_test_clients,
)
from tests.fakes.tenant import ALL_SCOPES, FakeTenant, iso_ms
from tests.unit.logs import logged, messages

PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy", "CURL_CA_BUNDLE")


@pytest.fixture
def tenant(ca, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca.ca_bundle_path)
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with FakeTenant(ca=ca, log_token_exchanges=False) as fake:
        add_test_clients(fake)
        yield fake


@pytest.fixture
def connect(tenant):
    """Auth0Client(...) for the tenant, as modinput builds one; closed after the test."""
    made = []

    def make(client_id=MAIN_CLIENT_ID, secret=MAIN_CLIENT_SECRET, cache=None, budget=60.0, **options):
        options.setdefault("domain", tenant.domain)
        api = Auth0Client(
            client_id=client_id,
            secret=lambda: secret,
            token_cache=cache if cache is not None else MemoryTokenCache(),
            deadline=time.monotonic() + budget,
            **options,
        )
        made.append(api)
        return api

    yield make
    for api in made:
        api.close()


def query_of(path):
    return dict(parse_qsl(urlsplit(path).query))


def request_log(tenant):
    """Every request the tenant received: it records one just after answering
    it, so wait (briefly) until the records match the requests counted."""
    waited = time.monotonic() + 2
    while len(tenant.request_log) < sum(tenant.calls.values()) and time.monotonic() < waited:
        time.sleep(0.001)
    return tenant.request_log


def calls(tenant, group):
    return [record for record in request_log(tenant) if record.group == group]


def add_logins(tenant, count, start=1000.0):
    return [tenant.add_log({"type": "s", "user_id": f"auth0|u{i}", "date": iso_ms(start + i)}) for i in range(count)]


# -- the token ------------------------------------------------------------------


def test_a_token_is_requested_once_for_the_run_and_cached_with_its_application_scope_and_expiry(tenant, connect):
    cache = MemoryTokenCache()
    api = connect(cache=cache)
    before = time.time()
    api.newest_log()
    api.logs_after("0")
    token = cache.token()
    assert token.access_token in tenant.issued_token_values
    assert token.client_id == MAIN_CLIENT_ID and token.scope == " ".join(ALL_SCOPES)
    assert before + 86400 - 5 < token.expires_at < time.time() + 86400 + 5  # the tenant's expires_in: a day
    assert api.token() is token and api.granted_scopes() == set(ALL_SCOPES)
    assert tenant.calls[("POST", "token")] == 1 and api.stats.tokens_requested == 1
    assert {record.client_id for record in calls(tenant, "logs")} == {MAIN_CLIENT_ID}


def test_the_token_lives_as_long_as_auth0_says(tenant, connect):
    tenant.add_client("short-lived", "short-secret", token_lifetime=7200)
    token = connect("short-lived", "short-secret").token()
    assert abs(token.expires_at - (time.time() + 7200)) < 5


def test_a_cached_token_is_reused_only_for_its_application_and_far_from_expiry(tenant, connect):
    cases = [
        (MAIN_CLIENT_ID, 2 * 3600, True),
        (MAIN_CLIENT_ID, TOKEN_RENEW_MARGIN + 20, True),
        (MAIN_CLIENT_ID, TOKEN_RENEW_MARGIN - 20, False),  # would expire within a run: renewed
        (LOGS_ONLY_CLIENT_ID, 2 * 3600, False),  # the input's client_id changed
    ]
    for owner, expires_in, reused in cases:
        tenant.reset_counters()
        cached = CachedToken(tenant.issue_token(owner), time.time() + expires_in, owner, "read:logs")
        cache = MemoryTokenCache()
        cache.save_token(cached)
        api = connect(cache=cache)
        api.newest_log()
        assert (api.token() is cached) == reused, (owner, expires_in)
        assert tenant.calls[("POST", "token")] == api.stats.tokens_requested == (0 if reused else 1)
        assert (cache.token() is cached) == reused
        assert calls(tenant, "logs")[0].client_id == (owner if reused else MAIN_CLIENT_ID)


def test_an_answer_without_expiry_or_scope_means_a_day_and_unknown_scopes(tenant, connect):
    tenant.fail_next("token", 200, body={"access_token": "opaque-token"})
    api = connect()
    before = time.time()
    token = api.token()
    assert token.access_token == "opaque-token" and token.scope == ""
    assert before + 86400 <= token.expires_at <= time.time() + 86400
    assert api.granted_scopes() is None


def test_granted_scopes_are_those_auth0_names(tenant, connect):
    assert connect(LOGS_ONLY_CLIENT_ID, LOGS_ONLY_CLIENT_SECRET).granted_scopes() == {"read:logs"}


def test_a_token_answer_without_an_access_token_is_an_outage(tenant, connect):
    for body in [{"token_type": "Bearer"}, {"access_token": ""}, [], "<html>maintenance</html>"]:
        tenant.fail_next("token", 200, body=body)
        cache = MemoryTokenCache()
        with pytest.raises(Auth0Unavailable) as caught:
            connect(cache=cache).token()
        assert str(caught.value) == f"Auth0 at {tenant.domain} answered the token request without an access token"
        assert cache.token() is None


def test_a_wrong_secret_says_to_check_the_client_id_and_secret(tenant, connect):
    with pytest.raises(Auth0AuthError) as caught:
        connect(secret="not-the-secret").newest_log()
    message = str(caught.value)
    assert message.startswith(f"Auth0 rejected client_id/client_secret for {tenant.domain} (401 access_denied): ")
    assert "check the Client ID and Client Secret" in message
    assert "not-the-secret" not in message
    assert tenant.calls[("POST", "token")] == 1 and not calls(tenant, "logs")


def test_an_application_without_the_management_api_grant_is_told_how_to_authorise_it(tenant, connect):
    with pytest.raises(Auth0AuthError) as caught:
        connect(NO_GRANT_CLIENT_ID, NO_GRANT_CLIENT_SECRET).newest_log()
    message = str(caught.value)
    assert message.startswith(
        f"the application {NO_GRANT_CLIENT_ID} is not authorised for the Auth0 Management API on "
        f"{tenant.domain} (403 access_denied): "
    )
    assert "authorise it with read:logs, read:users and update:users_app_metadata" in message
    assert NO_GRANT_CLIENT_SECRET not in message


def test_a_custom_domain_is_told_to_use_the_tenants_own_domain(tenant, connect):
    # What Auth0 answers when the audience is not served on this domain.
    description = f"Service not enabled within domain: https://{tenant.domain}/api/v2/"
    tenant.fail_next("token", 403, body={"error": "access_denied", "error_description": description})
    with pytest.raises(Auth0AuthError) as caught:
        connect().token()
    assert str(caught.value).startswith(
        f"Auth0 at {tenant.domain} does not serve the Management API audience https://{tenant.domain}/api/v2/ "
        "(403 access_denied): use the tenant's own domain"
    )


def test_any_other_token_refusal_carries_auth0s_status_code_and_description(tenant, connect):
    tenant.fail_next("token", 400, body={"error": "invalid_request", "error_description": "Odd request"})
    api = connect()
    with pytest.raises(Auth0RequestError) as caught:
        api.token()
    assert (caught.value.status, caught.value.code) == (400, "invalid_request")
    assert str(caught.value) == "Auth0 answered 400 invalid_request on token: Odd request"
    assert api.stats.tokens_requested == 1


def test_a_401_mid_run_gets_one_fresh_token_and_the_call_goes_on(tenant, connect):
    add_logins(tenant, 2)
    cache = MemoryTokenCache()
    api = connect(cache=cache)
    first = api.token()
    tenant.revoke_tokens()
    with logged() as records:
        page = api.logs_after("0")
    assert [entry["log_id"] for entry in page] == [log["log_id"] for log in tenant.logs]
    assert messages(records) == ["Auth0 answered 401 to a logs call: requesting a fresh token once"]
    assert tenant.tokens_issued == api.stats.tokens_requested == 2
    renewed = cache.token()
    assert renewed.access_token != first.access_token and api.token() is renewed
    assert [record.status for record in calls(tenant, "logs")] == [401, 200]


def test_a_second_401_stops_the_run_saying_the_application_lost_its_authorisation(tenant, connect):
    tenant.fail_next("logs", 401, times=3)
    api = connect()
    with pytest.raises(Auth0AuthError) as caught:
        api.logs_after("0")
    assert str(caught.value).startswith(f"Auth0 at {tenant.domain} refused a fresh access token (401 Unauthorized)")
    assert "check that the application is still authorised" in str(caught.value)
    assert len(calls(tenant, "logs")) == 2 and tenant.tokens_issued == 2
    tenant.fail_next("users_read", 401)
    with pytest.raises(Auth0AuthError):  # one renewal per run, not per call
        api.user_flag("auth0|x", "signedUp")
    assert tenant.tokens_issued == 2


# -- log reads ------------------------------------------------------------------------


def test_logs_after_a_checkpoint_are_read_a_hundred_at_a_time_in_log_id_order(tenant, connect):
    ids = add_logins(tenant, 120)
    api = connect()
    page = api.logs_after(ids[9])
    assert [entry["log_id"] for entry in page] == ids[10:110]
    assert page.raws is None
    (path,) = [record.path for record in calls(tenant, "logs")]
    assert {key: value for key, value in query_of(path).items() if key in ("from", "take")} == {
        "from": ids[9],
        "take": "100",
    }
    assert [entry["log_id"] for entry in api.logs_after(ids[109])] == ids[110:]


def test_a_log_page_keeps_each_logs_text_as_auth0_sent_it_when_asked(tenant, connect):
    sent = '[ {"log_id": "9001", "type": "s",  "n": 1.50},\n{"log_id":"9002","type":"ss"} ]'
    tenant.fail_next("logs", 200, body=sent)
    page = connect(keep_raw=True).logs_after("9000")
    assert page == [{"log_id": "9001", "type": "s", "n": 1.5}, {"log_id": "9002", "type": "ss"}]
    assert page.raws == ['{"log_id": "9001", "type": "s",  "n": 1.50}', '{"log_id":"9002","type":"ss"}']


def test_a_checkpoint_out_of_retention_is_checkpoint_expired(tenant, connect):
    ids = add_logins(tenant, 3)
    tenant.purge_before(iso_ms(1001.5))
    with pytest.raises(CheckpointExpired) as caught:
        connect().logs_after(ids[0])
    assert "400" in str(caught.value) and "out of range" in str(caught.value)


def test_a_400_to_a_search_is_a_request_error_not_an_expired_checkpoint(tenant, connect):
    tenant.fail_next("logs", 400, body={"statusCode": 400, "error": "Bad Request", "message": "bad q"})
    with pytest.raises(Auth0RequestError) as caught:
        connect().oldest_logs("2026-11-20T00:00:00.000Z")
    assert not isinstance(caught.value, CheckpointExpired)
    assert caught.value.status == 400 and "bad q" in str(caught.value)


def test_the_oldest_logs_are_searched_by_date_ascending_from_a_date(tenant, connect):
    ids = add_logins(tenant, 5)
    api = connect()
    since = iso_ms(1002)
    assert [entry["log_id"] for entry in api.oldest_logs(since, count=2)] == ids[2:4]
    assert [entry["log_id"] for entry in api.oldest_logs()] == ids
    with_date, without = (query_of(record.path) for record in calls(tenant, "logs"))
    assert with_date == {
        "q": f"date:[{since} TO *]",
        "sort": "date:1",
        "page": "0",
        "per_page": "2",
        "include_totals": "false",
        "include_fields": "true",
    }
    assert "q" not in without and without["per_page"] == "100" and without["sort"] == "date:1"


def test_the_newest_log_is_the_latest_by_date_or_none(tenant, connect):
    api = connect()
    assert api.newest_log() is None
    ids = add_logins(tenant, 3)
    tenant.add_log({"type": "f", "date": iso_ms(500)})  # a later log_id with an older date
    assert api.newest_log()["log_id"] == ids[-1]
    latest = query_of(calls(tenant, "logs")[-1].path)
    assert (latest["per_page"], latest["sort"]) == ("1", "date:-1")


def test_a_log_read_that_is_not_json_is_an_outage(tenant, connect):
    for keep_raw in (False, True):
        for body in ("maintenance", '[{"log_id": "1"}, {broken'):  # not JSON; an array broken off
            tenant.fail_next("logs", 200, body=body)
            with pytest.raises(Auth0Unavailable) as caught:
                connect(keep_raw=keep_raw).logs_after("0")
            assert str(caught.value) == "Auth0 answered a log read with str, not a list of logs"


# -- users --------------------------------------------------------------------------


def test_a_users_flag_is_read_from_app_metadata(tenant, connect):
    tenant.add_user("auth0|flagged", app_metadata={"signedUp": True, "plan": "gold"})
    tenant.add_user("google-oauth2|other", app_metadata={"plan": "free"})
    tenant.add_user("auth0|bare")
    api = connect()
    assert api.user_flag("auth0|flagged", "signedUp") is True
    assert api.user_flag("auth0|flagged", "plan") == "gold"
    assert api.user_flag("google-oauth2|other", "signedUp") is None
    assert api.user_flag("auth0|bare", "signedUp") is None
    tenant.add_user("samlp|corp/jo", app_metadata={"signedUp": True})
    assert api.user_flag("samlp|corp/jo", "signedUp") is True
    first, *_, last = (record.path for record in calls(tenant, "users_read"))
    assert urlsplit(first).path == "/api/v2/users/auth0%7Cflagged"  # the id is one path segment
    assert urlsplit(last).path == "/api/v2/users/samlp%7Ccorp%2Fjo"
    assert query_of(first) == {"fields": "user_id,app_metadata", "include_fields": "true"}


def test_app_metadata_that_is_no_object_reads_as_unset(tenant, connect):
    tenant.fail_next("users_read", 200, body={"user_id": "auth0|odd", "app_metadata": ["signedUp"]})
    assert connect().user_flag("auth0|odd", "signedUp") is None


def test_a_user_read_that_is_no_user_object_is_an_outage_not_an_unset_flag(tenant, connect):
    tenant.add_user("auth0|u1", app_metadata={"signedUp": True})
    text, array = "text that is not JSON", "JSON that is not an object"
    for body, kind in (("<html>maintenance</html>", text), ('{"user_id": "auth0|u1", "app_', text), ([], array)):
        tenant.fail_next("users_read", 200, body=body)
        with pytest.raises(Auth0Unavailable) as caught:
            connect().user_flag("auth0|u1", "signedUp")
        assert str(caught.value) == f"Auth0 answered the read of user auth0|u1 with {kind}, not a user"
    assert connect().user_flag("auth0|u1", "signedUp") is True


def test_setting_the_flag_patches_only_that_key_and_keeps_the_others(tenant, connect):
    tenant.add_user("auth0|a/b", app_metadata={"plan": "gold", "signedUp": False})
    connect().set_user_flag("auth0|a/b", "signedUp")
    assert tenant.patches == [("auth0|a/b", {"app_metadata": {"signedUp": True}})]
    assert urlsplit(calls(tenant, "users_write")[0].path).path == "/api/v2/users/auth0%7Ca%2Fb"
    assert tenant.user("auth0|a/b")["app_metadata"] == {"plan": "gold", "signedUp": True}


def test_a_user_gone_since_the_log_was_written_is_user_not_found(tenant, connect):
    api = connect()
    with pytest.raises(UserNotFound) as caught:
        api.user_flag("auth0|gone", "signedUp")
    assert "404" in str(caught.value) and "The user does not exist." in str(caught.value)
    with pytest.raises(UserNotFound):
        api.set_user_flag("auth0|gone", "signedUp")


def test_a_404_to_a_log_read_is_a_request_error(tenant, connect):
    tenant.fail_next("logs", 404)
    with pytest.raises(Auth0RequestError) as caught:
        connect().logs_after("0")
    assert not isinstance(caught.value, UserNotFound)
    assert caught.value.status == 404


def test_a_missing_scope_names_the_scope_and_where_to_grant_it(tenant, connect):
    tenant.add_user("auth0|u")
    cases = [
        (["read:logs"], lambda api: api.user_flag("auth0|u", "signedUp"), "read:users"),
        (["read:logs", "read:users"], lambda api: api.set_user_flag("auth0|u", "f"), "update:users_app_metadata"),
        (["read:users"], lambda api: api.newest_log(), "read:logs"),
    ]
    for number, (scopes, call, scope) in enumerate(cases):
        tenant.add_client(f"narrow{number}", "narrow-secret", scopes=scopes)
        api = connect(f"narrow{number}", "narrow-secret")
        with pytest.raises(Auth0ScopeError) as caught:
            call(api)
        assert caught.value.scope == scope
        assert str(caught.value) == (
            f"the application narrow{number} lacks the {scope} scope on {tenant.domain}: add it under "
            "Applications > APIs > Auth0 Management API > Machine to Machine Applications"
        )
        assert api.stats.tokens_requested == 1  # a missing scope is not a token problem: no renewal


def test_another_403_or_4xx_carries_auth0s_status_code_and_message(tenant, connect):
    api = connect()
    tenant.fail_next(
        "users_read", 403, body={"statusCode": 403, "error": "Forbidden", "message": "Blocked", "errorCode": "blocked"}
    )
    with pytest.raises(Auth0RequestError) as caught:
        api.user_flag("auth0|u", "signedUp")
    assert not isinstance(caught.value, Auth0ScopeError)
    assert (caught.value.status, caught.value.code) == (403, "blocked")
    assert str(caught.value) == "Auth0 answered 403 blocked on users_read: Blocked"
    tenant.fail_next("users_write", 409, body={"statusCode": 409, "error": "Conflict", "message": "Busy"})
    with pytest.raises(Auth0RequestError) as caught:
        api.set_user_flag("auth0|u", "signedUp")
    assert (caught.value.status, caught.value.code) == (409, "Conflict")
    assert len(calls(tenant, "users_write")) == 1  # a 4xx is not retried


def test_every_request_sent_is_counted_as_an_api_call(tenant, connect):
    tenant.add_user("auth0|u")
    api = connect()
    api.newest_log()
    tenant.revoke_tokens()
    api.user_flag("auth0|u", "signedUp")  # 401, a fresh token, again
    api.set_user_flag("auth0|u", "signedUp")
    assert api.stats.calls == sum(tenant.calls.values()) == 6


# -- rate limits ------------------------------------------------------------------------


def empty_bucket(reset_in, limit=10, remaining=0, whole=False):
    """Rate-limit headers as Auth0 sends them; Reset to the hundredth of a
    second unless `whole` (as Auth0 sends it), so a test waits a fraction of
    a second."""
    reset = time.time() + reset_in
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": str(math.ceil(reset)) if whole else f"{reset:.2f}",
    }


def test_a_429_on_a_flag_write_that_may_not_wait_is_deferred_at_once(tenant, connect):
    tenant.fail_next("users_write", 429, headers={"Retry-After": "1"})
    api = connect()
    with pytest.raises(RateLimited) as caught:
        api.set_user_flag("auth0|u", "signedUp", patient=False)
    assert str(caught.value) == "Auth0 rate limit (429) on users_write; deferred"
    assert api.stats.rate_limited == 1 and len(calls(tenant, "users_write")) == 1
    with pytest.raises(RateLimited) as caught:  # its bucket is known empty now: not even sent
        api.set_user_flag("auth0|u", "signedUp", patient=False)
    assert str(caught.value) == "Auth0 rate limit for users_write exhausted; deferred"
    tenant.fail_next("logs", 429, headers={"Retry-After": "3600"})
    with pytest.raises(RateLimited):
        api.logs_after("0")
    assert api.stats.rate_limited == 2  # the run's summary counts every 429
    assert len(calls(tenant, "users_write")) == 1


def test_a_token_request_waits_out_a_429_as_log_reads_do(tenant, connect):
    tenant.fail_next("token", 429, headers={"Retry-After": "3600"})
    with pytest.raises(RateLimited) as caught:
        connect().token()
    assert str(caught.value) == "Auth0 rate limit (429) on token; Auth0 asks to wait 3600s, longer than a run waits"


def test_a_429_asking_for_longer_than_a_run_waits_ends_the_run(tenant, connect):
    tenant.fail_next("logs", 429, headers={"Retry-After": "3600"})
    with pytest.raises(RateLimited) as caught:
        connect().logs_after("0")
    assert str(caught.value) == "Auth0 rate limit (429) on logs; Auth0 asks to wait 3600s, longer than a run waits"
    assert len(calls(tenant, "logs")) == 1


def test_a_429_whose_wait_outlasts_the_run_budget_ends_the_run(tenant, connect):
    for headers in (
        lambda: empty_bucket(1, whole=True),  # back in 1 to 2 s
        lambda: {"X-RateLimit-Limit": "none", "X-RateLimit-Remaining": "0"},  # nothing usable: a second
        lambda: {"X-RateLimit-Limit": "none", "Retry-After": "1"},
    ):
        tenant.reset_counters()
        tenant.fail_next("logs", 429, headers=headers())
        api = connect(budget=0.3)
        with pytest.raises(RateLimited) as caught:
            api.logs_after("0")
        assert str(caught.value) == "Auth0 rate limit (429) on logs; not retrying: the run's time budget is spent"
        assert len(calls(tenant, "logs")) == 1 and api.stats.rate_limited == 1


def test_a_429_waits_for_the_buckets_reset_not_just_a_second(tenant, connect):
    tenant.fail_next("logs", 429, headers=empty_bucket(100, whole=True))
    api = connect(budget=30)
    with pytest.raises(RateLimited) as caught:  # at once: the reset is past the budget
        api.logs_after("0")
    assert str(caught.value) == "Auth0 rate limit (429) on logs; not retrying: the run's time budget is spent"
    assert len(calls(tenant, "logs")) == 1


def test_the_rate_limit_headers_of_an_error_answer_pace_too(tenant, connect):
    tenant.fail_next(
        "users_read",
        404,
        body={"statusCode": 404, "error": "Not Found", "message": "The user does not exist."},
        headers=empty_bucket(30),
    )
    api = connect()
    with pytest.raises(UserNotFound):
        api.user_flag("auth0|gone", "signedUp")
    assert 20 < api.wait_for("users_read") <= 30 and api.wait_for("logs") == 0


def test_a_call_spends_a_request_even_when_its_answer_says_nothing_of_the_bucket(tenant, connect):
    tenant.fail_next("logs", 200, body=[], headers=empty_bucket(1000, remaining=1))
    tenant.fail_next("logs", 200, body=[])  # no X-RateLimit-* headers
    api = connect()
    api.logs_after("0")
    assert api.wait_for("logs") == 0
    api.logs_after("0")
    assert api.wait_for("logs") > 0  # the one request left was spent


def test_calls_drawing_on_one_bucket_are_found_to_share_it(tenant, connect):
    tenant.add_user("auth0|u")
    tenant.set_rate_limit("global", limit=100, per_seconds=1000)  # a free tenant: one bucket for all
    api = connect()
    api.logs_after("0")
    assert not api.shares_bucket("logs", "users_read")
    for _ in range(3):
        api.user_flag("auth0|u", "signedUp")
    api.logs_after("0")
    assert api.shares_bucket("logs", "users_read") and api.shares_bucket("users_read", "logs")
    assert not api.shares_bucket("logs", "users_write")


def test_the_rate_limit_headers_pace_the_next_call_of_that_kind_only(tenant, connect):
    tenant.fail_next("logs", 200, body=[], headers=lambda: empty_bucket(0.3))
    api = connect()
    api.logs_after("0")
    with logged(logging.DEBUG) as records:
        api.logs_after("0")
    first, second = calls(tenant, "logs")
    assert second.at - first.at >= 0.1
    (nap,) = records  # routine pacing: DEBUG only
    assert nap.levelname == "DEBUG"
    assert nap.getMessage().startswith("Auth0 rate limit for logs exhausted: retrying logs in 0.")


def test_a_flag_write_that_may_not_wait_is_deferred_without_a_request(tenant, connect):
    tenant.fail_next("users_write", 200, body={}, headers=empty_bucket(30))
    api = connect()
    api.set_user_flag("auth0|u", "signedUp")
    assert 20 < api.wait_for("users_write") <= 30
    assert api.wait_for("logs") == api.wait_for("users_read") == 0
    with pytest.raises(RateLimited) as caught:
        api.set_user_flag("auth0|u", "signedUp", patient=False)
    assert str(caught.value) == "Auth0 rate limit for users_write exhausted; deferred"
    assert len(calls(tenant, "users_write")) == 1


def test_a_bucket_empty_past_the_run_budget_ends_the_run(tenant, connect):
    tenant.fail_next("logs", 200, body=[], headers=empty_bucket(30))
    api = connect(budget=5)
    api.logs_after("0")
    with pytest.raises(RateLimited) as caught:
        api.logs_after("0")
    assert str(caught.value) == "Auth0 rate limit for logs exhausted; not retrying: the run's time budget is spent"
    assert len(calls(tenant, "logs")) == 1


def test_a_bucket_refilling_slower_than_a_run_waits_ends_the_run(tenant, connect):
    # 999 of 1000 spent and full again in 4.6 days: one request's worth takes ~7 minutes.
    tenant.fail_next("logs", 200, body=[], headers=empty_bucket(400000, limit=1000, remaining=1))
    tenant.fail_next("logs", 200, body=[], headers=empty_bucket(400000, limit=1000, remaining=0))
    api = connect()
    api.logs_after("0")
    api.logs_after("0")
    with pytest.raises(RateLimited) as caught:
        api.logs_after("0")
    message = str(caught.value)
    assert message.startswith("Auth0 rate limit for logs exhausted; Auth0 asks to wait ")
    assert 300 < float(message.rpartition(" ")[2].rstrip("s")) < 600
    assert len(calls(tenant, "logs")) == 2


def test_while_log_reads_wait_idle_work_sends_a_flag_write(tenant, connect):
    tenant.add_user("auth0|u")
    tenant.fail_next("logs", 200, body=[], headers=lambda: empty_bucket(0.3))
    api = connect()
    api.logs_after("0")
    sent = []

    def idle_work():
        if not sent:
            sent.append(api.set_user_flag("auth0|u", "signedUp"))
            return 0.0
        return float("inf")

    api.idle_work = idle_work
    api.logs_after("0")
    first, write, second = (record for record in request_log(tenant) if record.group != "token")
    assert (first.group, write.group, second.group) == ("logs", "users_write", "logs")
    assert second.at - first.at >= 0.1  # the log read still waited for its bucket
    assert tenant.user("auth0|u")["app_metadata"] == {"signedUp": True}


def test_idle_work_is_asked_again_when_it_may_go_before_the_waiting_call(tenant, connect):
    tenant.fail_next("logs", 200, body=[], headers=lambda: empty_bucket(0.3))
    api = connect()
    api.logs_after("0")
    asked = []
    api.idle_work = lambda: asked.append(time.monotonic()) or 0.03
    api.logs_after("0")
    assert 3 <= len(asked) <= 20  # every 0.03 s of the 0.3 s wait, not busily


def test_idle_work_never_runs_inside_idle_work(tenant, connect):
    tenant.add_user("auth0|u")
    tenant.fail_next("logs", 200, body=[], headers=lambda: empty_bucket(0.3))
    tenant.fail_next("users_write", 200, body={}, headers=lambda: empty_bucket(0.1))
    api = connect()
    api.logs_after("0")
    api.set_user_flag("auth0|u", "signedUp")
    depth, deepest = [0], [0]

    def idle_work():
        depth[0] += 1
        deepest[0] = max(deepest[0], depth[0])
        try:
            if deepest[0] == 1 and len(calls(tenant, "users_write")) == 1:
                api.set_user_flag("auth0|u", "signedUp")  # waits for its own bucket
            return float("inf")
        finally:
            depth[0] -= 1

    api.idle_work = idle_work
    api.logs_after("0")
    assert deepest[0] == 1 and len(calls(tenant, "users_write")) == 2


def test_a_token_renewed_by_idle_work_serves_the_waiting_call(tenant, connect):
    tenant.add_user("auth0|u")
    tenant.fail_next("logs", 200, body=[], headers=lambda: empty_bucket(0.3))
    api = connect()
    api.logs_after("0")
    tenant.revoke_tokens()
    done = []

    def idle_work():
        if done:
            return float("inf")
        done.append(api.set_user_flag("auth0|u", "signedUp"))  # 401: the run's one fresh token
        return 0.0

    api.idle_work = idle_work
    assert [entry["type"] for entry in api.logs_after("0")] == ["sapi"]  # the flag write's own log
    assert [record.status for record in calls(tenant, "logs")] == [200, 401, 200]
    assert tenant.tokens_issued == 2


# -- outages ----------------------------------------------------------------------------


def test_a_5xx_without_retries_is_an_outage_naming_the_status(tenant, connect):
    api = connect(retries=0)
    api.token()
    for status in (500, 502, 503):
        tenant.reset_counters()
        tenant.fail_next("logs", status)
        with pytest.raises(Auth0Unavailable) as caught:
            api.logs_after("0")
        assert str(caught.value) == f"Auth0 answered {status} on logs"
        assert len(calls(tenant, "logs")) == 1


def test_a_429_is_waited_out_and_the_same_call_goes_on(tenant, connect):
    add_logins(tenant, 2)
    tenant.fail_next("logs", 429, headers={"Retry-After": "1"})
    api = connect(budget=10)
    page = api.logs_after("0")
    assert [entry["user_id"] for entry in page] == ["auth0|u0", "auth0|u1"]
    assert len(calls(tenant, "logs")) == 2 and api.stats.rate_limited == 1


def test_a_429_whose_reset_is_no_whole_second_is_waited_out_not_a_crash(tenant, connect):
    add_logins(tenant, 1)
    tenant.fail_next("logs", 429, headers=lambda: empty_bucket(0.3))  # Reset "1796...48.37": int() refuses it
    api = connect(budget=10)
    with logged() as records:
        page = api.logs_after("0")
    assert [entry["user_id"] for entry in page] == ["auth0|u0"] and api.stats.rate_limited == 1
    [waited] = messages(records)
    assert waited.startswith("Auth0 rate limit (429) on logs: retrying logs in 0.")


def test_a_5xx_is_retried_after_a_seconds_back_off_and_the_call_goes_on(tenant, connect):
    add_logins(tenant, 1)
    api = connect(retries=1, budget=10)
    api.token()
    tenant.fail_next("logs", 503)
    with logged() as records:
        page = api.logs_after("0")
    assert [entry["user_id"] for entry in page] == ["auth0|u0"] and len(calls(tenant, "logs")) == 2
    assert messages(records) == ["Auth0 answered 503 on logs: retrying logs in 1.0s"]


def test_the_back_off_doubles_and_a_5xx_that_persists_gives_up_after_the_retries_saying_how_many(tenant, connect):
    api = connect(retries=2, budget=10)
    api.token()
    tenant.fail_next("logs", 502, times=3)
    with logged() as records, pytest.raises(Auth0Unavailable) as caught:
        api.logs_after("0")
    assert str(caught.value) == "Auth0 answered 502 on logs; gave up after 2 retries"
    assert messages(records) == [
        "Auth0 answered 502 on logs: retrying logs in 1.0s",
        "Auth0 answered 502 on logs: retrying logs in 2.0s",
    ]
    assert len(calls(tenant, "logs")) == 3 and api.stats.retries == 2


@pytest.mark.parametrize("through_a_proxy", [False, True], ids=["direct", "proxy"])
def test_a_connection_that_keeps_failing_gives_up_after_the_retries(connect, through_a_proxy):
    port = unused_port()
    if through_a_proxy:
        api, reason = connect(proxy_url=f"http://127.0.0.1:{port}", retries=1, budget=10), "proxy error reaching"
    else:
        api, reason = connect(domain=f"127.0.0.1:{port}", retries=1, budget=10), "cannot reach"
    with logged() as records, pytest.raises(Auth0Unavailable) as caught:
        api.token()
    assert str(caught.value) == f"{reason} {api.domain}: Connection refused; gave up after 1 retries"
    assert messages(records) == [f"{reason} {api.domain}: Connection refused: retrying token in 1.0s"]


def test_a_429_that_says_nothing_of_when_waits_a_second_and_goes_on(tenant, connect):
    add_logins(tenant, 1)
    tenant.fail_next("logs", 429, headers={"X-RateLimit-Limit": "none", "X-RateLimit-Remaining": "0"})  # nothing usable
    api = connect(budget=1.9)  # a second's wait fits, two would not
    with logged() as records:
        assert len(api.logs_after("0")) == 1 and len(calls(tenant, "logs")) == 2
    assert messages(records) == ["Auth0 rate limit (429) on logs: retrying logs in 1.0s"]


def test_a_429_asking_for_exactly_the_longest_wait_is_refused_for_the_budget_not_for_its_length(tenant, connect):
    tenant.fail_next("logs", 429, headers={"Retry-After": str(int(MAX_WAIT))})
    with pytest.raises(RateLimited) as caught:  # MAX_WAIT itself is waited for, when a run has the time
        connect(budget=1).logs_after("0")
    assert str(caught.value) == "Auth0 rate limit (429) on logs; not retrying: the run's time budget is spent"


def test_a_429_the_bucket_did_not_foretell_makes_the_pacer_wait_for_reset_not_its_refill_estimate(tenant, connect):
    reset = time.time() + 5
    tenant.fail_next(
        "logs",
        200,
        body=[],
        headers={"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "5", "X-RateLimit-Reset": f"{reset:.2f}"},
    )
    api = connect(budget=0.3)
    api.logs_after("0")  # five missing, full again in 5 s: about one a second
    assert api.wait_for("logs") == 0
    tenant.fail_next("logs", 429, headers=empty_bucket(30, whole=True))
    with pytest.raises(RateLimited):
        api.logs_after("0")
    # Our estimate said a token was there: this Reset is not "full", so wait for it.
    assert 28 < api.wait_for("logs") <= 31


def test_a_5xx_is_not_retried_past_the_run_budget(tenant, connect):
    tenant.fail_next("token", 503)
    api = connect(retries=1, budget=0.75)  # the first back-off is a second
    with pytest.raises(Auth0Unavailable) as caught:
        api.token()
    assert str(caught.value) == "Auth0 answered 503 on token; not retrying: the run's time budget is spent"
    assert tenant.calls[("POST", "token")] == 1


def test_a_dropped_connection_is_an_outage_and_never_resent_behind_the_clients_back(tenant, connect):
    tenant.fail_next("logs", None)
    with pytest.raises(Auth0Unavailable) as caught:
        connect(retries=0).logs_after("0")
    assert str(caught.value).startswith(f"cannot reach {tenant.domain}: ")
    assert "Remote end closed connection without response" in str(caught.value)
    assert len(calls(tenant, "logs")) == 1


def unused_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_refused_connection_is_an_outage_that_says_so(connect):
    domain = f"127.0.0.1:{unused_port()}"
    with pytest.raises(Auth0Unavailable) as caught:
        connect(domain=domain, retries=0).token()
    assert str(caught.value) == f"cannot reach {domain}: Connection refused"
    with pytest.raises(Auth0Unavailable) as caught:
        connect(domain=domain, retries=1, budget=0.75).token()
    assert str(caught.value) == (
        f"cannot reach {domain}: Connection refused; not retrying: the run's time budget is spent"
    )


def test_an_untrusted_certificate_is_a_tls_failure_at_once(tenant, connect, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")  # certifi's bundle does not know the test CA
    started = time.monotonic()
    with pytest.raises(Auth0Unavailable) as caught:
        connect(retries=4).token()
    assert time.monotonic() - started < 0.9  # no back-off: retrying cannot help
    message = str(caught.value)
    assert message.startswith(
        f"TLS failure talking to {tenant.domain}: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"
    )
    assert message.endswith(". The certificate is not trusted by this Splunk's CA bundle (or a proxy intercepts TLS)")
    assert tenant.calls[("POST", "token")] == 0


def test_a_proxy_that_cannot_be_reached_is_an_outage_that_names_it(tenant, connect):
    api = connect(proxy_url=f"http://127.0.0.1:{unused_port()}", retries=0)
    with pytest.raises(Auth0Unavailable) as caught:
        api.token()
    assert str(caught.value) == f"proxy error reaching {tenant.domain}: Connection refused"
    with pytest.raises(Auth0Unavailable) as caught:
        connect(proxy_url=f"http://127.0.0.1:{unused_port()}", retries=1, budget=0.75).token()
    assert str(caught.value).endswith(": Connection refused; not retrying: the run's time budget is spent")


def test_a_malformed_address_is_a_failed_request(connect):
    with pytest.raises(Auth0Unavailable) as caught:
        connect(domain="127.0.0.1:99999", retries=4).token()
    assert (
        str(caught.value) == "request to 127.0.0.1:99999 failed: Failed to parse: https://127.0.0.1:99999/oauth/token"
    )
