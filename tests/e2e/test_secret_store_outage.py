"""README's promise for a credential store that is down (modinput._with_secrets):
a newly typed secret still collects, and the error is logged every run until
it works; a masked secret cannot be read, so the run fails clearly."""

from tests.fakes.seed import MAIN_CLIENT_SECRET

MASK = "********"


def errors(result):
    return [line for line in result.stderr.splitlines() if line.startswith("ERROR ")]


def test_a_typed_secret_collects_while_the_store_is_down_and_says_so_every_run(bed):
    expected = [log["log_id"] for log in bed.tenant.logs if log.get("type") in ("s", "ss")]
    bed.splunkd.fail_next(503)  # the run's first splunkd call: storing the secret
    first = bed.run()
    assert first.returncode == 0, first.stderr
    assert first.log_ids == expected
    assert first.summary()["status"] == "ok"
    assert any("cannot write the credential store" in line and "plain text" in line for line in errors(first))
    assert bed.splunkd.passwords == {}
    assert bed.splunkd.input_params("prod")["client_secret"] == MAIN_CLIENT_SECRET  # not masked: nothing to read back

    new = bed.tenant.add_log({"type": "ss", "user_id": "auth0|while-down", "user_name": "d"})
    bed.splunkd.fail_next(503)
    second = bed.run()
    assert second.returncode == 0, second.stderr
    assert second.log_ids == [new]
    assert any("cannot write the credential store" in line for line in errors(second))  # every run

    third = bed.run()  # the store is back
    assert third.returncode == 0, third.stderr
    assert errors(third) == []
    assert bed.splunkd.passwords == {("TA-auth0", "prod"): MAIN_CLIENT_SECRET}
    assert bed.splunkd.input_params("prod")["client_secret"] == MASK


def test_a_masked_secret_with_the_store_down_fails_clearly_and_collects_nothing(bed):
    # state_store = local: the only splunkd call of the run is the credential read.
    assert bed.run(state_store="local").returncode == 0
    assert bed.splunkd.input_params("prod")["client_secret"] == MASK
    new = bed.tenant.add_log({"type": "ss", "user_id": "auth0|after", "user_name": "a"})
    bed.tenant.revoke_tokens()
    bed.tenant.reset_counters()
    # The cached token is refused and a new one needs the stored secret.
    bed.splunkd.fail_next(503)
    down = bed.run()
    assert down.returncode != 0
    assert down.events == []
    assert down.summary()["status"] == "error"
    assert any("cannot read the credential store: 503" in line for line in errors(down))
    assert bed.tenant.calls[("POST", "token")] == 0  # without its secret it asks Auth0 for no token
    back = bed.run()
    assert back.returncode == 0, back.stderr
    assert back.log_ids == [new]


def test_a_run_with_a_valid_cached_token_needs_no_credential_store(bed):
    assert bed.run(state_store="local").returncode == 0
    new = bed.tenant.add_log({"type": "ss", "user_id": "auth0|during", "user_name": "d"})
    bed.splunkd.fail_next(503, times=5)  # splunkd's REST API is down
    during = bed.run()
    assert during.returncode == 0, during.stderr
    assert during.log_ids == [new]
    assert not [request for request in bed.splunkd.requests if "storage/passwords" in request[1] and request[2] == 503]


def test_the_masking_write_goes_through_splunkds_validation(bed):
    first = bed.run()
    assert first.returncode == 0, first.stderr
    # splunkd ran --validate-arguments on the masked stanza: it read the
    # stored secret back (a GET of the credential during the masking POST).
    requests = [(m, p.split("?")[0], s) for m, p, s in bed.splunkd.requests]
    mask = max(i for i, r in enumerate(requests) if r[0] == "POST" and "/data/inputs/auth0_activity/prod" in r[1])
    reads = [r for r in requests[:mask] if r[0] == "GET" and "/storage/passwords/" in r[1]]
    assert reads, requests
    assert requests[mask][2] == 200
    assert bed.tenant.tokens_issued == 1  # validation reused the run's cached token


def test_validation_refusing_the_masked_stanza_leaves_it_unmasked_and_says_so(bed):
    # The credential store loses the secret between its write and the masking
    # write (the validator finds the mask but no secret): splunkd refuses the edit.
    original = bed.splunkd.validator

    def forget_then_validate(name, params):
        bed.splunkd.remove_password("prod", "TA-auth0")
        return original(name, params)

    bed.splunkd.validator = forget_then_validate
    result = bed.run()
    assert result.returncode == 0, result.stderr  # the run collected: only the masking failed
    assert result.events
    assert bed.splunkd.input_params("prod")["client_secret"] == MAIN_CLIENT_SECRET
    assert any("cannot mask the secret" in line and "400" in line for line in errors(result))
