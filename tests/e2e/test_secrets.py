"""SPEC §6: the secret moves to storage/passwords, the stanza keeps a mask,
and neither the secret nor a token shows up anywhere else."""

import os

import pytest

from tests.fakes.proxy import FakeProxy
from tests.fakes.seed import MAIN_CLIENT_ID, MAIN_CLIENT_SECRET

MASK = "********"


def test_first_run_moves_the_secret_and_masks_the_stanza(bed):
    first = bed.run()
    assert first.returncode == 0, first.stderr
    assert bed.splunkd.input_params("prod")["client_secret"] == MASK
    assert bed.splunkd.passwords == {("TA-auth0", "prod"): MAIN_CLIENT_SECRET}
    assert "moved client_secret into Splunk's credential store" in first.stderr
    # The stanza is masked last: splunkd restarts an input whose stanza changes.
    method, path, status = bed.splunkd.requests[-1]
    assert (method, status) == ("POST", 200) and "/data/inputs/auth0_activity/prod" in path
    assert first.stderr.index("moved client_secret") > first.stderr.index("new input: starting")
    # The next run gets the mask from splunkd and reads the store.
    new = bed.tenant.add_log({"type": "ss", "user_id": "auth0|n2", "user_name": "n2"})
    second = bed.run()
    assert second.returncode == 0, second.stderr
    assert second.log_ids == [new]
    assert "moved" not in second.stderr


def test_a_newly_typed_secret_replaces_the_stored_one(bed):
    bed.run()
    bed.tenant.add_client(MAIN_CLIENT_ID, "rotated-secret-0123456789", name="rotated")
    bed.configure("prod", client_secret="rotated-secret-0123456789")
    bed.tenant.revoke_tokens()  # the cached token is refused: a new one needs the new secret
    new = bed.tenant.add_log({"type": "ss", "user_id": "auth0|n3", "user_name": "n3"})
    result = bed.run()
    assert result.returncode == 0, result.stderr
    assert result.log_ids == [new]
    assert bed.splunkd.passwords == {("TA-auth0", "prod"): "rotated-secret-0123456789"}
    assert bed.splunkd.input_params("prod")["client_secret"] == MASK


def test_masked_secret_missing_from_the_store_says_what_to_do(bed):
    result = bed.run(client_secret=MASK)
    assert result.returncode != 0
    assert result.events == []
    assert "masked but missing from Splunk's credential store" in result.stderr
    assert "type the client secret again" in result.stderr


def test_deleting_and_recreating_an_input_works(bed):
    bed.run()
    bed.splunkd.remove_input("prod")
    result = bed.run(client_secret=MAIN_CLIENT_SECRET)  # recreated with its secret typed again
    assert result.returncode == 0, result.stderr
    assert bed.splunkd.input_params("prod")["client_secret"] == MASK
    assert bed.splunkd.passwords == {("TA-auth0", "prod"): MAIN_CLIENT_SECRET}


@pytest.mark.slow  # waits out back-off or a rate limit's reset
def test_proxy_is_used_and_its_password_is_a_secret(bed):
    with FakeProxy("proxyuser", "proxy-pass-SECRET-99") as proxy:
        result = bed.run(proxy_url=proxy.url("proxyuser", "proxy-pass-SECRET-99"))
        assert result.returncode == 0, result.stderr
        assert result.events
        assert proxy.tunnels and set(proxy.tunnels) == {bed.tenant.domain}
        assert bed.splunkd.input_params("prod")["proxy_url"] == proxy.url("proxyuser", MASK)
        assert bed.splunkd.passwords[("TA-auth0", "prod#proxy")] == "proxy-pass-SECRET-99"
        # Later runs read the proxy password back from the store.
        bed.tenant.add_log({"type": "ss", "user_id": "auth0|p2", "user_name": "p2"})
        again = bed.run()
        assert again.returncode == 0, again.stderr
        assert len(again.events) == 1
        assert proxy.refused == 0
        assert_nowhere(bed, [result, again], ["proxy-pass-SECRET-99"])


def test_secret_and_tokens_appear_nowhere_else(bed):
    results = [bed.run()]
    bed.tenant.revoke_tokens()
    bed.tenant.add_log({"type": "s", "user_id": "auth0|t", "details": {}})
    results.append(bed.run(log_level="DEBUG"))
    results.append(bed.run(domain="https://bad/", client_secret=MAIN_CLIENT_SECRET))  # an error path too
    tokens = bed.tenant.issued_token_values
    assert len(tokens) == 2
    assert_nowhere(bed, results, [MAIN_CLIENT_SECRET] + tokens, allow_token_in_checkpoint=True)


def assert_nowhere(bed, results, secrets, allow_token_in_checkpoint=False):
    texts = {f"run {i} {name}": getattr(r, name) for i, r in enumerate(results) for name in ("stdout", "stderr")}
    for top in (bed.splunk_home, bed.checkpoint_dir):
        for folder, _, files in os.walk(top):
            for name in files:
                path = os.path.join(folder, name)
                with open(path, "rb") as handle:
                    texts[path] = handle.read().decode("utf-8", "replace")
    assert any(path.endswith("ta_auth0.log") for path in texts)
    for where, text in texts.items():
        for secret in secrets:
            if allow_token_in_checkpoint and where.startswith(bed.checkpoint_dir) and secret != MAIN_CLIENT_SECRET:
                # The cached token lives in the checkpoint file, mode 0600 (SPEC §6).
                assert os.stat(where).st_mode & 0o077 == 0, where
                continue
            assert secret not in text, f"a secret leaked into {where}"
