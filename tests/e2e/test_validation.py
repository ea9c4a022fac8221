"""SPEC §3 external validation: every bad value gets its own clear message,
the script exits non-zero, and the secret is never echoed."""

import socket
import xml.etree.ElementTree as ET

import pytest

from tests.addon import addon_env, run_script
from tests.fakes.seed import (
    LOGS_ONLY_CLIENT_ID,
    LOGS_ONLY_CLIENT_SECRET,
    MAIN_CLIENT_SECRET,
    NO_GRANT_CLIENT_ID,
    NO_GRANT_CLIENT_SECRET,
)


def message_of(done):
    """The <error><message> splunkd shows in the form, or None on success."""
    out = done.stdout.decode()
    if done.returncode == 0:
        assert out.strip() == "", out
        return None
    root = ET.fromstring(out)
    assert root.tag == "error"
    text = root.findtext("message")
    assert text
    for secret in (MAIN_CLIENT_SECRET, LOGS_ONLY_CLIENT_SECRET, NO_GRANT_CLIENT_SECRET, "typo-secret"):
        assert secret not in out and secret not in done.stderr.decode()
    return text


def test_good_settings_pass(bed):
    assert message_of(bed.validate()) is None
    # Validation never writes state or events and does not spend a flag write.
    assert bed.tenant.calls[("PATCH", "users_write")] == 0


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"domain": ""}, "domain is required"),
        ({"domain": "https://example.us.auth0.com/"}, "domain must be a host name like example.us.auth0.com, got"),
        ({"domain": "example.us.auth0.com/api/v2"}, "domain must be a host name"),
        ({"domain": "example us.auth0.com"}, "domain must be a host name"),
        ({"domain": "example.us.auth0.com:99999"}, "port must be a number from 1 to 65535"),
        ({"start_from": "last tuesday"}, "start_from must be oldest, now or an ISO-8601 date/time"),
        ({"metadata_flag": "signed.up"}, "metadata_flag must be an app_metadata key name"),
        ({"update_metadata": "perhaps"}, "update_metadata must be true or false"),
        ({"proxy_url": "socks5://127.0.0.1:1080"}, "proxy_url must look like http://proxy.example.com:3128"),
    ],
)
def test_bad_values(bed, changes, expected):
    assert expected in message_of(bed.validate(**changes))


def test_connection_refused(bed):
    text = message_of(bed.validate(domain="127.0.0.1:1"))
    assert "cannot reach 127.0.0.1:1" in text and "Connection refused" in text


def test_untrusted_certificate(bed):
    bed.env = addon_env(_other_ca(bed), bed.splunk_home)  # trusts another CA, not the tenant's
    text = message_of(bed.validate())
    assert "TLS failure" in text and "not trusted" in text


def _other_ca(bed):
    from tests.fakes.certs import make_test_ca

    return make_test_ca(bed.root + "/other-ca").ca_bundle_path


def test_wrong_secret(bed):
    text = message_of(bed.validate(client_secret="typo-secret"))
    assert f"Auth0 rejected client_id/client_secret for {bed.tenant.domain} (401 access_denied)" in text


def test_unknown_client(bed):
    assert "Auth0 rejected client_id/client_secret" in message_of(bed.validate(client_id="nobody-knows-me"))


def test_application_not_authorised_for_the_management_api(bed):
    text = message_of(bed.validate(client_id=NO_GRANT_CLIENT_ID, client_secret=NO_GRANT_CLIENT_SECRET))
    assert "is not authorised for the Auth0 Management API" in text
    assert "(403 access_denied)" in text


def test_missing_scopes_named(bed):
    # LOGS_ONLY has read:logs alone: it lacks a user read and a user write scope.
    text = message_of(bed.validate(client_id=LOGS_ONLY_CLIENT_ID, client_secret=LOGS_ONLY_CLIENT_SECRET))
    assert "lacks the read:users, update:users_app_metadata scopes" in text
    text = message_of(
        bed.validate(client_id=LOGS_ONLY_CLIENT_ID, client_secret=LOGS_ONLY_CLIENT_SECRET, update_metadata="false")
    )
    assert "lacks the read:users scope on" in text


@pytest.mark.parametrize(
    "scopes",
    [
        ["read:logs", "read:users", "update:users_app_metadata"],  # what README asks for
        ["read:logs_users", "read:users", "update:users"],  # Auth0's alternatives for the same calls
    ],
)
def test_any_scope_auth0_accepts_for_a_call_is_accepted(bed, scopes):
    bed.tenant.add_client("alt-client", "alt-secret-0123456789", scopes=scopes)
    assert message_of(bed.validate(client_id="alt-client", client_secret="alt-secret-0123456789")) is None


def test_an_application_without_any_log_scope_is_refused_naming_read_logs(bed):
    bed.tenant.add_client("no-logs", "no-logs-secret-0123456789", scopes=["read:users", "update:users"])
    text = message_of(bed.validate(client_id="no-logs", client_secret="no-logs-secret-0123456789"))
    assert f"the application no-logs lacks the read:logs scope on {bed.tenant.domain}" in text


def test_localhost_with_a_port_is_a_domain(bed):
    # The tenant listens on 127.0.0.1 only: this holds only where localhost is 127.0.0.1.
    addresses = {info[4][0] for info in socket.getaddrinfo("localhost", bed.tenant.port, type=socket.SOCK_STREAM)}
    assert addresses == {"127.0.0.1"}, f"localhost resolves to {addresses} here; the tests use 127.0.0.1 only"
    assert message_of(bed.validate(domain=f"localhost:{bed.tenant.port}")) is None


def test_mask_accepted_on_later_edits(bed):
    bed.run()  # the first run stored the secret
    assert message_of(bed.validate(client_secret="********")) is None


def test_mask_without_stored_secret(bed):
    assert "masked but missing from Splunk's credential store" in message_of(bed.validate(client_secret="********"))


def test_run_mode_refuses_the_same_values_without_crash_looping(bed):
    result = bed.run(domain="https://example.us.auth0.com/")
    assert result.returncode != 0
    assert result.events == []
    error = [line for line in result.stderr.splitlines() if line.startswith("ERROR ")]
    assert any("domain must be a host name like example.us.auth0.com" in line for line in error)
    assert result.summary()["status"] == "error"
    assert sum(bed.tenant.calls.values()) == 0  # it did not even try


def test_a_validated_secret_is_stored_at_once(bed):
    assert message_of(bed.validate()) is None
    assert bed.splunkd.passwords == {("TA-auth0", "prod"): MAIN_CLIENT_SECRET}


def test_a_refused_secret_is_not_stored(bed):
    assert message_of(bed.validate(client_secret="typo-secret"))
    assert bed.splunkd.passwords == {}


def test_the_token_a_validation_gets_serves_the_first_run(bed):
    # Auth0 rate-limits /oauth/token and logs every token (SPEC §7): saving
    # the form and running the input cost one token, not two.
    assert message_of(bed.validate()) is None
    assert bed.tenant.tokens_issued == 1
    result = bed.run()
    assert result.returncode == 0, result.stderr
    assert result.summary()["tokens_requested"] == "0"
    assert bed.tenant.tokens_issued == 1


# The Data inputs form, as splunkd builds it from --scheme: the labels an admin
# sees (README, The Splunk side), which fields the form requires, the types.
FORM = {
    "domain": ("Auth0 domain", True, "string"),
    "client_id": ("Client ID", True, "string"),
    "client_secret": ("Client secret", True, "string"),
    "start_from": ("Start from", False, "string"),
    "update_metadata": ("Update the signed-up flag", False, "boolean"),
    "metadata_flag": ("Flag name", False, "string"),
    "collect": ("Collect", False, "string"),
    "proxy_url": ("Proxy URL", False, "string"),
    "log_level": ("Log level", False, "string"),
    "state_store": ("State store", False, "string"),
}


def test_the_scheme_gives_splunkd_the_form_every_parameter_and_external_validation(bed):
    done = run_script(["--scheme"], "", bed.env)
    assert done.returncode == 0, done.stderr
    scheme = ET.fromstring(done.stdout.decode())
    assert scheme.findtext("title") == "Auth0 activity"
    assert "sourcetype auth0_activity" in scheme.findtext("description")
    assert (scheme.findtext("use_external_validation"), scheme.findtext("use_single_instance")) == ("true", "false")
    assert scheme.findtext("streaming_mode") == "xml"
    args = list(scheme.iter("arg"))
    form = {
        a.get("name"): (a.findtext("title"), a.findtext("required_on_create") == "true", a.findtext("data_type"))
        for a in args
    }
    assert form == FORM
    assert all(arg.findtext("required_on_edit") == "false" and arg.findtext("description") for arg in args)
