"""What splunkd asks about the input's form, answered in this process: the
`--scheme` document the Data inputs form is built from, and
`--validate-arguments` (SPEC §3) through splunklib's ValidationDefinition,
against the fake tenant and the fake splunkd: bad values refused with a
message an admin can act on, good ones tried against Auth0, the token kept
for the runs (SPEC §7), a typed secret stored (SPEC §6), never a secret in
a message."""

from __future__ import annotations

import io
import os
import socket
import xml.etree.ElementTree as ET

import pytest
from splunklib.modularinput import ValidationDefinition

import ta_auth0
from ta_auth0.scheme import Auth0ActivityInput
from tests.addon import validation_xml
from tests.e2e.test_validation import FORM
from tests.fakes.proxy import FakeProxy
from tests.fakes.seed import (
    LOGS_ONLY_CLIENT_ID,
    LOGS_ONLY_CLIENT_SECRET,
    MAIN_CLIENT_ID,
    MAIN_CLIENT_SECRET,
    add_test_clients,
)
from tests.fakes.splunkd import FakeSplunkd
from tests.fakes.tenant import FakeTenant

MASK = "********"
REALM = "TA-auth0"
PROXY_USER, PROXY_PASSWORD = "proxyuser", "proxy-pass-DO-NOT-LEAK-9"
PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
PROXY_VARIABLES += ("NO_PROXY", "no_proxy", "CURL_CA_BUNDLE")
WHERE_SCOPES_ARE_ADDED = "under Applications > APIs > Auth0 Management API > Machine to Machine Applications"

# ---- --scheme: the Data inputs form ---------------------------------------------
# README/inputs.conf.spec and SPEC §3: the labels, which parameters are required
# (only when the input is created: an edit shows the mask), the types: FORM,
# written out once beside the end-to-end form test.


def scheme_xml() -> ET.Element:
    """The document `--scheme` prints, as splunkd reads it (serialised and parsed back)."""
    return ET.fromstring(ET.tostring(Auth0ActivityInput().get_scheme().to_xml(), encoding="unicode"))


def test_the_scheme_names_the_input_and_asks_for_external_validation_one_process_per_input_xml_events():
    scheme = scheme_xml()
    assert scheme.findtext("title") == "Auth0 activity"
    description = scheme.findtext("description")
    assert "sourcetype auth0_activity" in description and "signed-up flag" in description
    assert scheme.findtext("use_external_validation") == "true"
    assert scheme.findtext("use_single_instance") == "false"
    assert scheme.findtext("streaming_mode") == "xml"


def test_the_form_has_every_parameter_with_its_label_type_and_whether_it_is_required():
    args = list(scheme_xml().iter("arg"))
    form = {
        arg.get("name"): (
            arg.findtext("title"),
            arg.findtext("required_on_create") == "true",
            arg.findtext("data_type"),
        )
        for arg in args
    }
    assert form == FORM
    assert [arg.findtext("required_on_create") for arg in args] == [
        "true" if FORM[arg.get("name")][1] else "false" for arg in args
    ]
    # An edit keeps what the stanza has: nothing is required again (the secret shows as the mask).
    assert {arg.findtext("required_on_edit") for arg in args} == {"false"}
    assert all(len(arg.findtext("description") or "") > 20 for arg in args)
    described = {arg.get("name"): arg.findtext("description") for arg in args}
    assert "credential store" in described["client_secret"] and MASK in described["client_secret"]


def test_the_script_object_is_not_the_run_mode():
    with pytest.raises(NotImplementedError, match="ta_auth0.modinput.run"):
        Auth0ActivityInput().stream_events(None, None)


# ---- --validate-arguments ---------------------------------------------------------


class World:
    def __init__(self, tenant: FakeTenant, splunkd: FakeSplunkd, root: str) -> None:
        self.tenant, self.splunkd, self.root = tenant, splunkd, root
        self.checkpoint_dir = os.path.join(root, "checkpoints")
        os.makedirs(self.checkpoint_dir)

    def params(self, **changes) -> dict:
        params = {"domain": self.tenant.domain, "client_id": MAIN_CLIENT_ID, "client_secret": MAIN_CLIENT_SECRET}
        params.update(changes)
        return {key: value for key, value in params.items() if value is not None}

    def validate(self, name: str = "prod", checkpoint_dir: str = None, session_key: str = None, **changes) -> None:
        """What `--validate-arguments` does with splunkd's document; raises with the form's message."""
        document = validation_xml(
            name,
            self.params(**changes),
            self.splunkd.server_uri,
            self.splunkd.session_key if session_key is None else session_key,
            checkpoint_dir or self.checkpoint_dir,
        )
        Auth0ActivityInput().validate_input(ValidationDefinition.parse(io.StringIO(document)))

    def refusal(self, **changes) -> str:
        with pytest.raises(ValueError) as err:
            self.validate(**changes)
        message = str(err.value)
        for secret in (MAIN_CLIENT_SECRET, LOGS_ONLY_CLIENT_SECRET, PROXY_PASSWORD, self.splunkd.session_key):
            assert secret not in message
        return message

    def calls(self, method: str, group: str) -> int:
        return self.tenant.calls[(method, group)]

    def elsewhere(self) -> str:
        """Another instance's checkpoint directory (no token kept there)."""
        path = os.path.join(self.root, "elsewhere")
        os.makedirs(path, exist_ok=True)
        return path


@pytest.fixture(scope="module")
def tenant(ca):
    # One tenant for the module (its counters and tokens reset for each test): a
    # fake server's shutdown costs a poll interval, and this module's budget is small.
    with FakeTenant(ca=ca) as tenant:
        add_test_clients(tenant)
        yield tenant


@pytest.fixture(scope="module")
def proxy():
    with FakeProxy(PROXY_USER, PROXY_PASSWORD) as proxy:
        yield proxy


@pytest.fixture
def world(tenant, ca, tmp_path, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca.ca_bundle_path)
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    tenant.revoke_tokens()
    tenant.reset_counters()
    with FakeSplunkd(ca.server_ssl_context()) as splunkd:
        yield World(tenant, splunkd, str(tmp_path))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_good_settings_are_tried_against_auth0_and_the_secret_stored(world):
    earlier = len(world.tenant.logs)  # the module's tenant keeps the logs of the tests before
    world.validate()
    assert (world.calls("POST", "token"), world.calls("GET", "logs")) == (1, 1)
    assert world.splunkd.passwords == {(REALM, "prod"): MAIN_CLIENT_SECRET}
    # The stanza is left alone: the input's first run masks it (a masking write restarts the input).
    assert not [r for r in world.splunkd.requests if "/data/inputs/" in r[1]]
    # Auth0 shows who asked for the token in the tenant's logs.
    exchange = [log for log in world.tenant.logs[earlier:] if log["type"] == "seccft"]
    assert [log["user_agent"] for log in exchange] == [ta_auth0.user_agent()]
    assert ta_auth0.user_agent().startswith("TA-auth0/")


def test_a_later_edit_showing_the_mask_uses_the_token_the_validation_kept(world):
    world.validate()
    world.validate(client_secret=MASK)
    # Auth0 accepted these credentials already: no second token, no second read (SPEC §7).
    assert (world.calls("POST", "token"), world.calls("GET", "logs")) == (1, 1)
    assert world.tenant.tokens_issued == 1


def test_a_later_edit_without_a_kept_token_tries_the_stored_secret_and_stores_nothing(world):
    world.splunkd.add_password(MAIN_CLIENT_SECRET, "prod", realm=REALM)
    world.validate(client_secret=MASK, checkpoint_dir=world.elsewhere())
    assert (world.calls("POST", "token"), world.calls("GET", "logs")) == (1, 1)
    assert not [r for r in world.splunkd.requests if r[0] == "POST"]
    # That token is kept for this instance's runs too.
    world.validate(client_secret=MASK, checkpoint_dir=world.elsewhere())
    assert world.tenant.tokens_issued == 1


def test_a_stored_secret_that_auth0_now_refuses_is_refused(world):
    world.splunkd.add_password("an-old-secret-0123456789", "prod", realm=REALM)
    message = world.refusal(client_secret=MASK)
    assert message.startswith(f"Auth0 rejected client_id/client_secret for {world.tenant.domain} (401 access_denied)")
    assert "an-old-secret-0123456789" not in message


def test_the_mask_with_no_stored_secret_says_to_type_it_again(world):
    message = world.refusal(client_secret=MASK)
    assert message == (
        "the client secret of input prod is masked but missing from Splunk's credential store: "
        "edit the input and type the client secret again"
    )
    assert world.calls("POST", "token") == 0


def test_the_mask_without_a_session_key_says_splunkd_did_not_pass_one(world):
    world.splunkd.add_password(MAIN_CLIENT_SECRET, "prod", realm=REALM)
    message = world.refusal(client_secret=MASK, session_key="")
    assert message == "splunkd did not pass server_uri and session_key: cannot reach the credential store"


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"domain": "https://example.us.auth0.com/"}, "domain must be a host name like example.us.auth0.com, got"),
        ({"client_secret": None}, "client_secret is required"),
        ({"update_metadata": "perhaps"}, "update_metadata must be true or false"),
        ({"proxy_url": "socks5://127.0.0.1:1080"}, "proxy_url must look like http://proxy.example.com:3128"),
    ],
)
def test_bad_values_are_refused_before_auth0_is_asked(world, changes, expected):
    message = world.refusal(**changes)
    assert expected in message
    assert sum(world.tenant.calls.values()) == 0
    assert world.splunkd.passwords == {}


def test_a_wrong_secret_is_refused_and_not_stored(world):
    message = world.refusal(client_secret="typo-secret-0123456789")
    assert message.startswith(f"Auth0 rejected client_id/client_secret for {world.tenant.domain} (401 access_denied)")
    assert "typo-secret-0123456789" not in message
    assert world.splunkd.passwords == {}


def test_missing_scopes_are_named_with_where_to_add_them_before_any_log_read(world):
    base = dict(client_id=LOGS_ONLY_CLIENT_ID, client_secret=LOGS_ONLY_CLIENT_SECRET)
    message = world.refusal(**base)
    assert message == (
        f"the application {LOGS_ONLY_CLIENT_ID} lacks the read:users, update:users_app_metadata scopes on "
        f"{world.tenant.domain}: add them {WHERE_SCOPES_ARE_ADDED}"
    )
    # Without flag writes one scope is missing: singular.
    message = world.refusal(update_metadata="false", **base)
    assert message == (
        f"the application {LOGS_ONLY_CLIENT_ID} lacks the read:users scope on {world.tenant.domain}: "
        f"add it {WHERE_SCOPES_ARE_ADDED}"
    )
    assert world.calls("GET", "logs") == 0
    assert world.splunkd.passwords == {}


def test_a_token_that_names_no_scopes_is_judged_by_the_log_read(world):
    # Auth0 did not say what it granted: the one-log read finds out, and says which scope is missing.
    world.tenant.add_client("silent", "silent-secret-0123456789", scopes=[])
    message = world.refusal(client_id="silent", client_secret="silent-secret-0123456789")
    assert (
        message
        == f"the application silent lacks the read:logs scope on {world.tenant.domain}: add it {WHERE_SCOPES_ARE_ADDED}"
    )
    assert world.calls("GET", "logs") == 1


def test_auth0_unavailable_is_refused_at_once_without_a_retry(world):
    world.tenant.fail_next("token", 503)
    message = world.refusal()
    assert "503" in message
    assert world.calls("POST", "token") == 1
    assert world.splunkd.passwords == {}


def test_a_short_rate_limit_wait_fits_in_the_validations_time_and_the_settings_are_accepted(world):
    world.tenant.fail_next("token", 429, headers={"Retry-After": "1"})
    world.validate()  # no refusal: the form waits a second rather than blame good settings
    assert world.calls("POST", "token") == 2
    assert world.splunkd.passwords == {(REALM, "prod"): MAIN_CLIENT_SECRET}


def test_a_credential_store_that_is_down_does_not_refuse_good_settings(world):
    # Storing is best effort here: the input's first run stores the secret too.
    world.splunkd.fail_next(503)
    world.validate()
    assert world.splunkd.passwords == {}
    assert world.calls("POST", "token") == 1


def test_validation_goes_through_the_proxy_and_stores_its_password(world, proxy):
    tunnels = len(proxy.tunnels)
    world.validate(proxy_url=proxy.url(PROXY_USER, PROXY_PASSWORD))
    assert proxy.tunnels[tunnels:] == [world.tenant.domain]
    assert world.splunkd.passwords == {(REALM, "prod"): MAIN_CLIENT_SECRET, (REALM, "prod#proxy"): PROXY_PASSWORD}
    # A later edit shows both masked: both come from the store, and Auth0 is reached through the proxy.
    world.validate(client_secret=MASK, proxy_url=proxy.url(PROXY_USER, MASK), checkpoint_dir=world.elsewhere())
    assert len(proxy.tunnels) == tunnels + 2 and proxy.refused == 0


def test_a_new_secret_typed_with_the_proxy_shown_masked_is_not_stored_until_auth0_accepts_it(world, proxy):
    world.splunkd.add_password(MAIN_CLIENT_SECRET, "prod", realm=REALM)
    world.splunkd.add_password(PROXY_PASSWORD, "prod#proxy", realm=REALM)
    tunnels = len(proxy.tunnels)
    message = world.refusal(client_secret="typo-secret-0123456789", proxy_url=proxy.url(PROXY_USER, MASK))
    assert len(proxy.tunnels) == tunnels + 1 and proxy.refused == 0  # the stored proxy password got it through
    assert message.startswith(f"Auth0 rejected client_id/client_secret for {world.tenant.domain} (401 access_denied)")
    assert world.splunkd.passwords == {(REALM, "prod"): MAIN_CLIENT_SECRET, (REALM, "prod#proxy"): PROXY_PASSWORD}


def test_an_unreachable_proxy_is_named_without_its_password(world):
    port = closed_port()
    message = world.refusal(proxy_url=f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{port}")
    assert message.startswith(f"proxy error reaching {world.tenant.domain}: ") and "Connection refused" in message
    assert world.splunkd.passwords == {}


def test_a_secret_pasted_into_a_field_the_message_repeats_is_masked(world):
    # The domain's message repeats what was typed; a secret in it is masked.
    message = world.refusal(domain=f"https://{MAIN_CLIENT_SECRET}/")
    assert f"https://{MASK}/" in message
    proxy_url = f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:3128"
    message = world.refusal(domain=f"https://{PROXY_PASSWORD}/", proxy_url=proxy_url)
    assert f"https://{MASK}/" in message


def test_a_secret_inside_another_is_masked_whole(world):
    # The proxy password contains the client secret: the longer is masked first, leaving nothing of it
    # (masked in another order, "prefix-" and "-suffix" would show).
    password = "prefix-" + MAIN_CLIENT_SECRET + "-suffix"
    proxy_url = f"http://{PROXY_USER}:{password}@127.0.0.1:3128"
    message = world.refusal(domain=f"https://{password}/", proxy_url=proxy_url)
    assert f"https://{MASK}/" in message
    assert "prefix-" not in message and "-suffix" not in message
