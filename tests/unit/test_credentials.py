"""Splunk's credential store (SPEC §6), against the fake splunkd through splunklib:
where a typed secret goes (realm TA-auth0, user = the input's name, `#proxy`
for the proxy password), what the stanza gets instead (exactly the mask),
how a masked value is read back, and what each failure says (what happened
and what to do; never the secret nor the session key)."""

from __future__ import annotations

import errno
import os
import socket

import pytest

from ta_auth0.config import MASK, InputConfig
from ta_auth0.credentials import (
    CredentialError,
    CredentialStore,
    resolve_secrets,
    stored_client_secret,
    stored_proxy_url,
)
from tests.fakes.splunkd import FakeSplunkd

REALM = "TA-auth0"  # README, The Splunk side: realm TA-auth0, user = input name
SECRET = "typed-secret-DO-NOT-LEAK-7"
PROXY_PASSWORD = "proxy-pass-DO-NOT-LEAK-8"
INJECTED_503 = "503 Service Unavailable -- fake splunkd: injected HTTP 503"


@pytest.fixture
def splunkd(ca):
    with FakeSplunkd(ca.server_ssl_context()) as fake:
        yield fake


@pytest.fixture
def store(splunkd):
    return CredentialStore(splunkd.server_uri, splunkd.session_key)


def config(name: str = "prod", **changes) -> InputConfig:
    values = {"name": name, "domain": "example.us.auth0.com", "client_id": "cid", "client_secret": SECRET}
    values.update(changes)
    return InputConfig(**values)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def refused() -> str:
    """How an OSError for a refused connection reads (`[Errno 111] Connection refused` on Linux)."""
    return str(ConnectionRefusedError(errno.ECONNREFUSED, os.strerror(errno.ECONNREFUSED)))


def assert_discreet(err: pytest.ExceptionInfo, splunkd: FakeSplunkd) -> None:
    for secret in (SECRET, PROXY_PASSWORD, splunkd.session_key):
        assert secret not in str(err.value)


# ---- the store itself ----------------------------------------------------------


@pytest.mark.parametrize(
    "server_uri, session_key",
    [("", "a-session-key"), (None, "a-session-key"), ("https://127.0.0.1:8089", ""), ("https://127.0.0.1:8089", None)],
)
def test_a_store_without_server_uri_or_session_key_says_splunkd_did_not_pass_them(server_uri, session_key):
    with pytest.raises(CredentialError) as err:
        CredentialStore(server_uri, session_key)
    assert str(err.value) == "splunkd did not pass server_uri and session_key: cannot reach the credential store"


def test_a_typed_secret_is_stored_in_the_apps_namespace_under_the_realm_and_input_name(splunkd, store):
    store.put("prod", SECRET)
    assert splunkd.passwords == {(REALM, "prod"): SECRET}
    # Nowhere else (not in the session user's default app, where the add-on would not find it).
    assert [(c["realm"], c["username"], c["app"]) for c in splunkd.all_credentials] == [(REALM, "prod", "TA-auth0")]
    assert store.get("prod") == SECRET


def test_a_new_secret_replaces_the_stored_one(splunkd, store):
    splunkd.add_password("old-secret", "prod", realm=REALM)
    store.put("prod", SECRET)
    assert splunkd.passwords == {(REALM, "prod"): SECRET}
    assert len(splunkd.all_credentials) == 1


def test_a_secret_stored_earlier_is_read_back_and_an_unknown_one_is_none(splunkd, store):
    splunkd.add_password(SECRET, "prod", realm=REALM)
    splunkd.add_password("someone-elses", "prod", realm="another-app-realm")
    assert store.get("prod") == SECRET
    assert store.get("staging") is None


def test_a_store_that_is_down_says_it_cannot_read_or_write_with_splunkds_status(splunkd, store):
    splunkd.add_password(SECRET, "prod", realm=REALM)
    splunkd.fail_next(503)
    with pytest.raises(CredentialError) as err:
        store.get("prod")
    assert str(err.value) == f"cannot read the credential store: {INJECTED_503}"
    assert_discreet(err, splunkd)
    splunkd.fail_next(503)
    with pytest.raises(CredentialError) as err:
        store.put("prod", SECRET)
    assert str(err.value) == f"cannot write the credential store: {INJECTED_503}"
    assert_discreet(err, splunkd)
    assert splunkd.passwords == {(REALM, "prod"): SECRET}


def test_an_unreachable_splunkd_is_named_by_the_network_error():
    store = CredentialStore(f"https://127.0.0.1:{closed_port()}", "a-session-key")
    with pytest.raises(CredentialError) as err:
        store.get("prod")
    assert str(err.value) == f"cannot read the credential store: {refused()}"
    with pytest.raises(CredentialError) as err:
        store.put("prod", SECRET)
    assert str(err.value) == f"cannot write the credential store: {refused()}"
    with pytest.raises(CredentialError) as err:
        store.mask_input("prod", client_secret=MASK)
    assert str(err.value) == f"cannot mask the secret in the input's settings: {refused()}"


def test_masking_writes_the_mask_into_the_inputs_stanza_and_leaves_the_rest(splunkd, store):
    # A name with a slash and a space: one path segment all the same.
    splunkd.add_input("eu/prod 1", domain="example.eu.auth0.com", client_secret=SECRET, interval="300")
    store.mask_input("eu/prod 1", client_secret=MASK)
    assert splunkd.input_params("eu/prod 1") == {
        "domain": "example.eu.auth0.com",
        "client_secret": MASK,
        "interval": "300",
    }


def test_a_refused_masking_write_carries_splunkds_message_cut_at_300_characters(splunkd, store):
    splunkd.add_input("prod", client_secret=SECRET)
    # splunkd runs the input's validation on the edit; its message is shown whole, up to 300 characters.
    refusal = "Validation for auth0_activity://prod failed -- " + "x" * 400
    splunkd.validator = lambda name, params: refusal
    with pytest.raises(CredentialError) as err:
        store.mask_input("prod", client_secret=MASK)
    assert str(err.value) == f"cannot mask the secret in the input's settings: 400 Bad Request -- {refusal[:300]}"
    assert_discreet(err, splunkd)
    assert splunkd.input_params("prod")["client_secret"] == SECRET


# ---- resolve_secrets: what a run or a validation does with the stanza --------------


def test_a_typed_secret_is_moved_and_the_stanza_gets_exactly_the_mask(splunkd, store):
    resolved, masked = resolve_secrets(config(), store)
    assert resolved.client_secret == SECRET  # this run uses it
    assert masked == {"client_secret": MASK}
    assert splunkd.passwords == {(REALM, "prod"): SECRET}


def test_with_move_false_a_typed_secret_is_used_but_not_stored(splunkd, store):
    resolved, masked = resolve_secrets(config(), store, move=False)
    assert (resolved.client_secret, masked) == (SECRET, {})
    assert splunkd.passwords == {}


def test_colons_and_slashes_in_an_input_name_become_underscores_in_its_credential(splunkd, store):
    resolve_secrets(config("eu:prod/a\\b"), store)
    assert splunkd.passwords == {(REALM, "eu_prod_a_b"): SECRET}
    resolved, _ = resolve_secrets(config("eu:prod/a\\b", client_secret=MASK), store)
    assert resolved.client_secret == SECRET


def test_a_masked_secret_is_read_from_the_store_and_nothing_is_moved(splunkd, store):
    splunkd.add_password(SECRET, "prod", realm=REALM)
    resolved, masked = resolve_secrets(config(client_secret=MASK), store)
    assert (resolved.client_secret, masked) == (SECRET, {})
    assert resolved.domain == "example.us.auth0.com" and resolved.name == "prod"
    assert stored_client_secret(store, "prod") == SECRET


def test_a_masked_secret_missing_from_the_store_says_to_type_it_again(splunkd, store):
    splunkd.add_password(SECRET, "staging", realm=REALM)  # another input's
    with pytest.raises(CredentialError) as err:
        resolve_secrets(config(client_secret=MASK), store)
    assert str(err.value) == (
        "the client secret of input prod is masked but missing from Splunk's credential store: "
        "edit the input and type the client secret again"
    )


def test_a_typed_proxy_password_is_moved_and_the_proxy_url_masked_around_it(splunkd, store):
    # '@' in the password: the host is what follows the last '@'.
    password = "p@ss-" + PROXY_PASSWORD
    typed = f"http://proxyuser:{password}@127.0.0.1:3128"
    resolved, masked = resolve_secrets(config(proxy_url=typed), store)
    assert resolved.proxy_url == typed  # this run uses it
    assert masked == {"client_secret": MASK, "proxy_url": f"http://proxyuser:{MASK}@127.0.0.1:3128"}
    assert splunkd.passwords == {(REALM, "prod"): SECRET, (REALM, "prod#proxy"): password}


def test_a_proxy_password_without_a_user_keeps_an_empty_user(splunkd, store):
    _, masked = resolve_secrets(config(proxy_url=f"https://:{PROXY_PASSWORD}@proxy.example.com:8443"), store)
    assert masked["proxy_url"] == f"https://:{MASK}@proxy.example.com:8443"
    assert splunkd.passwords[(REALM, "prod#proxy")] == PROXY_PASSWORD


def test_a_masked_proxy_password_is_put_back_from_the_store(splunkd, store):
    splunkd.add_password(SECRET, "prod", realm=REALM)
    splunkd.add_password("p@ss-" + PROXY_PASSWORD, "prod#proxy", realm=REALM)
    masked_url = f"http://proxyuser:{MASK}@127.0.0.1:3128"
    resolved, masked = resolve_secrets(config(client_secret=MASK, proxy_url=masked_url), store)
    assert resolved.proxy_url == f"http://proxyuser:p@ss-{PROXY_PASSWORD}@127.0.0.1:3128"
    assert (resolved.client_secret, masked) == (SECRET, {})
    # A run whose client secret it reads later (a cached token) restores the proxy alone.
    alone = stored_proxy_url(store, config(client_secret=MASK, proxy_url=masked_url))
    assert alone == resolved.proxy_url


def test_a_masked_proxy_password_missing_from_the_store_says_to_type_the_proxy_url_again(splunkd, store):
    with pytest.raises(CredentialError) as err:
        resolve_secrets(config(proxy_url=f"http://proxyuser:{MASK}@127.0.0.1:3128"), store, move=False)
    assert str(err.value) == (
        "the proxy password of input prod is masked but missing from Splunk's credential "
        "store: edit the input and type the proxy URL again"
    )


def test_a_typed_secret_with_a_masked_proxy_stores_the_secret_and_reads_the_proxy(splunkd, store):
    splunkd.add_password(PROXY_PASSWORD, "prod#proxy", realm=REALM)
    resolved, masked = resolve_secrets(config(proxy_url=f"http://u:{MASK}@127.0.0.1:3128"), store)
    assert resolved.proxy_url == f"http://u:{PROXY_PASSWORD}@127.0.0.1:3128"
    assert masked == {"client_secret": MASK}
    assert splunkd.passwords == {(REALM, "prod"): SECRET, (REALM, "prod#proxy"): PROXY_PASSWORD}


def test_a_proxy_without_a_password_needs_nothing_from_the_store(splunkd, store):
    splunkd.add_password(SECRET, "prod", realm=REALM)
    for proxy_url in (None, "http://127.0.0.1:3128", "http://proxyuser@127.0.0.1:3128"):
        before = len(splunkd.requests)
        assert stored_proxy_url(store, config(client_secret=MASK, proxy_url=proxy_url)) == proxy_url
        assert len(splunkd.requests) == before  # not even a read
        resolved, masked = resolve_secrets(config(client_secret=MASK, proxy_url=proxy_url), store)
        assert (resolved.client_secret, resolved.proxy_url, masked) == (SECRET, proxy_url, {})
    assert splunkd.passwords == {(REALM, "prod"): SECRET}
