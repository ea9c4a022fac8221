"""Parameters: every bad value gets a message a person can act on."""

from datetime import datetime, timezone

import pytest

from ta_auth0.config import MASK, ConfigError, parse_config, redact_url

GOOD = {"domain": "example.us.auth0.com", "client_id": "abcDEF123", "client_secret": "s3cret"}


def parse(**changes):
    params = dict(GOOD, **changes)
    return parse_config("auth0_activity://prod", {k: v for k, v in params.items() if v is not None})


def problem(**changes):
    with pytest.raises(ConfigError) as caught:
        parse(**changes)
    return str(caught.value)


def test_defaults():
    config = parse()
    assert config.name == "prod"
    assert config.start_from == "oldest"
    assert config.update_metadata is True
    assert config.metadata_flag == "signedUp"
    assert config.log_level == "INFO"
    assert config.proxy_url is None
    assert config.collect == "activity"
    assert config.needed_calls == ("logs", "users_read", "users_write")


@pytest.mark.parametrize(
    "domain, expected",
    [
        ("Example.US.auth0.com", "example.us.auth0.com"),
        ("login.example.com:443", "login.example.com:443"),
        ("127.0.0.1:8443", "127.0.0.1:8443"),
        ("tenant.auth0.com.", "tenant.auth0.com"),
        # SPEC §3: `host` or `host:port`; single-label names are hosts too.
        ("localhost:8443", "localhost:8443"),
        ("localhost", "localhost"),
        ("auth0-proxy", "auth0-proxy"),
    ],
)
def test_good_domains(domain, expected):
    assert parse(domain=domain).domain == expected


@pytest.mark.parametrize(
    "domain, words",
    [
        ("https://example.us.auth0.com/", "domain must be a host name like example.us.auth0.com"),
        ("example.us.auth0.com/api", "domain must be a host name"),
        ("exa mple.auth0.com", "domain must be a host name"),
        ("example.auth0.com:0", "port must be a number from 1 to 65535"),
        ("example.auth0.com:70000", "port must be a number from 1 to 65535"),
        ("example.auth0.com:http", "port must be a number"),
        ("", "domain is required"),
        (":443", "domain must be a host name"),
        ("under_score.auth0.com", "domain must be a host name"),
        ("user@example.auth0.com", "domain must be a host name"),
        ("-bad.auth0.com", "domain must be a host name"),
        ("999.1.1.1", "domain must be a host name"),
    ],
)
def test_bad_domains(domain, words):
    assert words in problem(domain=domain)


def test_required_values_named():
    message = problem(domain="", client_id="", client_secret="")
    assert "domain is required" in message
    assert "client_id is required" in message
    assert "client_secret is required" in message


def test_start_from():
    assert parse(start_from="NOW").start_from == "now"
    assert parse(start_from="2026-11-18").start_from == datetime(2026, 11, 18, tzinfo=timezone.utc)
    assert parse(start_from="2026-11-18T09:30:00Z").start_from == datetime(2026, 11, 18, 9, 30, tzinfo=timezone.utc)
    assert parse(start_from="2026-11-18T10:30:00+01:00").start_from == datetime(
        2026, 11, 18, 9, 30, tzinfo=timezone.utc
    )
    assert "start_from must be oldest, now or an ISO-8601 date/time" in problem(start_from="yesterday")
    assert "got '2026-13-01'" in problem(start_from="2026-13-01")


def test_booleans_and_levels():
    assert parse(update_metadata="0").update_metadata is False
    assert parse(update_metadata="False").update_metadata is False
    assert "update_metadata must be true or false, got 'maybe'" in problem(update_metadata="maybe")
    assert parse(log_level="warn").log_level == "WARNING"
    assert "log_level must be one of DEBUG, INFO, WARNING, ERROR" in problem(log_level="LOUD")
    assert "users_write" not in parse(update_metadata="false").needed_calls


@pytest.mark.parametrize(
    "granted, update, missing",
    [
        # Any one of an endpoint's scopes grants it (Auth0's API reference).
        ({"read:logs", "read:users", "update:users_app_metadata"}, True, []),
        ({"read:logs_users", "read:users", "update:users"}, True, []),
        ({"read:logs", "read:logs_users", "read:users", "update:users", "update:users_app_metadata"}, True, []),
        ({"read:logs_users", "read:users"}, False, []),
        # A refusal names the narrowest scope that would do.
        ({"read:users", "update:users"}, True, ["read:logs"]),
        ({"read:logs"}, True, ["read:users", "update:users_app_metadata"]),
        ({"read:logs"}, False, ["read:users"]),
        (set(), True, ["read:logs", "read:users", "update:users_app_metadata"]),
        # A scope for something else grants nothing here.
        (
            {"read:clients", "update:current_user_metadata", "read:logs"},
            True,
            ["read:users", "update:users_app_metadata"],
        ),
    ],
)
def test_missing_scopes_any_of(granted, update, missing):
    assert parse(update_metadata=str(update).lower()).missing_scopes(granted) == missing


def test_collect():
    assert parse(collect="ALL").collect == "all"
    assert parse(collect="activity").collect == "activity"
    assert parse(collect=" ").collect == "activity"  # blank means the default
    assert "collect must be activity (successful signups and logins) or all (every Auth0 log), got 'some'" in problem(
        collect="some"
    )


@pytest.mark.parametrize("flag", ["signed.up", "$set", "", "a b", "a" * 65, "1abc"])
def test_bad_flag_names(flag):
    if not flag.strip():
        assert parse(metadata_flag=flag).metadata_flag == "signedUp"  # blank means the default
    else:
        assert "metadata_flag must be an app_metadata key name" in problem(metadata_flag=flag)


def test_proxy_url_and_its_password_never_echoed():
    assert parse(proxy_url="http://proxy.corp:3128").proxy_url == "http://proxy.corp:3128"
    message = problem(proxy_url="ftp://bob:hunter2@proxy.corp:3128")
    assert "proxy_url must look like http://proxy.example.com:3128" in message
    assert "hunter2" not in message
    assert "hunter2" not in problem(proxy_url="http://bob:hunter2@proxy.corp")  # no port
    assert "must not have a path" in problem(proxy_url="http://proxy.corp:3128/x")
    assert redact_url("http://bob:pw@h:1") == f"http://{MASK}@h:1"


def test_secret_never_in_messages():
    message = problem(domain="https://x/", start_from="bad", client_secret="TOPSECRET")
    assert "TOPSECRET" not in message
    assert "TOPSECRET" not in repr(parse(client_secret="TOPSECRET"))


def test_mask_is_recognised():
    assert parse(client_secret=MASK).secret_is_masked


def test_index_default_is_left_to_splunkd():
    assert parse(index="default").index is None
    assert parse(index="auth0").index == "auth0"


def test_start_from_accepts_a_lowercase_z_as_utc():
    # Python 3.11+ reads "Z" itself but not "z"; 3.9 reads neither.
    moment = parse(start_from="2026-11-18T09:30:00z").start_from
    assert moment == datetime(2026, 11, 18, 9, 30, tzinfo=timezone.utc)


def test_start_from_without_offset_is_utc_whatever_the_machines_time_zone(local_time_zone_new_york):
    for value in ("2026-11-18T09:30:00", "2026-11-18T09:30:00Z", "2026-11-18T04:30:00-05:00"):
        moment = parse(start_from=value).start_from
        assert moment == datetime(2026, 11, 18, 9, 30, tzinfo=timezone.utc), value
        assert moment.tzinfo == timezone.utc and moment.hour == 9, value


def test_every_problem_is_listed_together():
    with pytest.raises(ConfigError) as caught:
        parse(domain="https://x/", start_from="bad", collect="some")
    problems = caught.value.problems
    assert len(problems) == 3
    assert str(caught.value) == "; ".join(problems)


def test_proxy_url_shapes():
    assert parse(proxy_url="https://proxy.corp:3128/").proxy_url == "https://proxy.corp:3128/"
    assert "must not have a path or query" in problem(proxy_url="http://proxy.corp:3128?x=1")
    assert "must not have a path or query" in problem(proxy_url="http://proxy.corp:3128#top")
    # The message shows the URL as given, credentials masked.
    assert f"got 'http://{MASK}@proxy.corp'" in problem(proxy_url="http://bob:hunter2@proxy.corp")
    assert "got 'http://proxy.corp:99999'" in problem(proxy_url="http://proxy.corp:99999")


def test_redact_url_masks_any_credentials_and_only_them():
    assert redact_url("http://proxy.corp:3128") == "http://proxy.corp:3128"
    assert redact_url("http://bob@h:1") == f"http://{MASK}@h:1"
    assert redact_url("http://:pw@h:1") == f"http://{MASK}@h:1"
    assert redact_url("http://bob:p@ss@h:1") == f"http://{MASK}@h:1"  # an unescaped @ in the password


def problems(**changes):
    with pytest.raises(ConfigError) as caught:
        parse(**changes)
    return caught.value.problems


def test_each_missing_value_says_what_to_enter():
    # These are what the Data inputs form shows: the exact words are the product.
    assert problems(domain="", client_id="", client_secret="") == [
        "domain is required: the Auth0 tenant domain, e.g. example.us.auth0.com",
        "client_id is required: the Client ID of the machine-to-machine application",
        "client_secret is required: the Client Secret of the machine-to-machine application",
    ]
    assert problems(client_id="abc def") == ["client_id must be the application's Client ID (letters, digits, - _ .)"]


def test_the_parsed_config_carries_each_value():
    config = parse(client_id="Abc-1_2.3", index="", domain="Tenant.EU.auth0.com")
    assert (config.client_id, config.client_secret, config.domain) == ("Abc-1_2.3", "s3cret", "tenant.eu.auth0.com")
    assert config.index is None


def test_a_stanza_name_without_the_scheme_is_the_name():
    assert parse_config("prod-eu", GOOD).name == "prod-eu"


@pytest.mark.parametrize("odd", ["@", "?", "#", "/", " ", "\t"])
def test_each_character_a_host_cannot_hold_is_refused_alone(odd):
    # After the port too, where it would otherwise be taken for a bad port.
    for domain in (f"tenant{odd}x.auth0.com", f"tenant.auth0.com:443{odd}x"):
        assert f"domain must be a host name like example.us.auth0.com, got {domain!r}" in problem(domain=domain)


@pytest.mark.parametrize("port, good", [("1", True), ("0", False), ("65535", True), ("65536", False), ("0443", True)])
def test_port_bounds(port, good):
    if good:
        assert parse(domain=f"tenant.auth0.com:{port}").domain == f"tenant.auth0.com:{int(port)}"
    else:
        assert "domain's port must be a number from 1 to 65535" in problem(domain=f"tenant.auth0.com:{port}")


def test_ipv4_octets_and_host_length_bounds():
    assert parse(domain="10.0.0.255").domain == "10.0.0.255"
    assert "domain must be a host name" in problem(domain="10.0.0.256")
    longest = ".".join(["a" * 63] * 3 + ["b" * 61])  # 253 characters
    assert parse(domain=longest).domain == longest
    assert "domain must be a host name" in problem(domain=longest + "b")


def test_start_from_refuses_a_date_with_any_other_trailing_letter():
    assert "start_from must be oldest, now" in problem(start_from="2026-11-18T09:30:00X")


def test_proxy_password():
    from ta_auth0.config import proxy_password

    assert proxy_password(None) is None
    assert proxy_password("") is None
    assert proxy_password("http://proxy.corp:3128") is None
    assert proxy_password("http://bob:hunter2@proxy.corp:3128") == "hunter2"
