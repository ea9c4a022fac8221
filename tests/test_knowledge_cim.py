"""The CIM mapping of SPEC §8 evaluated on sample events of every Auth0 log
type, in both shapes: `auth0` events ({log_id, data}, as Auth0's log stream
and the input with collect = all send them) and `auth0_activity` events.

Every EVAL, LOOKUP and event type search of default/ runs here through
tests/spl.py on the samples of tests/fixtures/knowledge/ (hand-built from
Auth0's schemas and docs, see tests/knowledge.py); the values expected are
SPEC §8's and Auth0's, written down here, not read back from the mapping.
Whether every field a CIM dataset requires is there is judged by Splunk's
own models in tests/cim/.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from datetime import datetime
from typing import Any, Dict, List, Tuple

import pytest

from tests.knowledge import (
    LOOKUPS,
    Knowledge,
    activity_samples,
    conf,
    load,
    sample_logs,
    stream_event,
    stream_samples,
)
from tests.spl import Expr, Lookup, evaluate, expr_fields, matches

UNKNOWN_TYPE = "x_new_type_2027"
# Fields the mapping defines (EVAL or lookup output) that must be a real value
# or absent, never "null" or empty.
TOKEN_EXCHANGE_OR_SILENT = re.compile(r"^auth-(token-exchange|silent-auth)-")


@pytest.fixture(scope="module")
def knowledge() -> Knowledge:
    return Knowledge()


@pytest.fixture(scope="module")
def stream(knowledge) -> List[Tuple[Dict[str, Any], Dict[str, Any]]]:
    return stream_samples(knowledge)


@pytest.fixture(scope="module")
def table() -> Dict[str, Dict[str, str]]:
    with open(LOOKUPS / "auth0_log_types.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len({row["type"] for row in rows}) == len(rows), "one row per type"
    return {row["type"]: row for row in rows}


def of_type(stream, code: str) -> List[Dict[str, Any]]:
    found = [fields for log, fields in stream if log["type"] == code]
    assert found, f"no sample of {code}"
    return found


def defined_fields(knowledge: Knowledge, sourcetype: str) -> set:
    stanza = knowledge.props[sourcetype]
    names = {key[len("EVAL-") :] for key in stanza if key.startswith("EVAL-")}
    for key, value in stanza.items():
        if key.startswith("LOOKUP-"):
            words = value.split()
            mode = next(word for word in words if word in ("OUTPUT", "OUTPUTNEW"))
            outs = words[words.index(mode) + 1 :]
            i = 0
            while i < len(outs):
                if i + 2 < len(outs) and outs[i + 1] == "AS":
                    names.add(outs[i + 2])
                    i += 3
                else:
                    names.add(outs[i])
                    i += 1
    return names


# --- the table --------------------------------------------------------------------------


def test_the_table_has_a_row_for_every_code_auth0_documents(table):
    codes = load("auth0_log_type_codes.json")
    documented, schemas = set(codes["table"]), set(codes["schemas"])
    assert (len(documented), len(schemas), len(documented | schemas)) == (165, 166, 172)
    retired = {code for group in codes["retired"].values() for code in group}
    assert not retired & (documented | schemas)
    current = {code for code, row in table.items() if row["source"] != "retired"}
    assert current == documented | schemas
    assert {code for code, row in table.items() if row["source"] == "retired"} == retired
    for code, row in table.items():
        expected = {(True, True): "table+schemas", (True, False): "table", (False, True): "schemas"}.get(
            (code in documented, code in schemas), "retired"
        )
        assert row["source"] == expected, code
        assert row["description"] and row["category"] and row["signature"], code


def test_the_table_uses_auth0s_names_and_categories(table):
    # Spot checks against Auth0's "Log Event Type Codes" table and its tenant
    # log catalog (docs-v2 main/docs/tenant-logs/<category>/<code>).
    assert table["fp"]["description"] == "Failed Login (Incorrect Password)"
    assert table["fu"]["description"] == "Failed Login (Invalid Email/Username)"
    assert table["limit_wc"]["description"] == table["limit_sul"]["description"] == "Blocked Account"
    assert table["sapi"]["description"] == "Success API Operation"
    assert (table["s"]["category"], table["f"]["category"], table["sertft"]["category"]) == (
        "auth-login-success",
        "auth-login-fail",
        "auth-token-exchange-success",
    )
    # Signatures tell every type apart, where Auth0's names do not (16 codes
    # are called "Failed Exchange" or "Success Exchange").
    assert Counter(row["description"] for row in table.values())["Success Exchange"] > 5
    assert len({row["signature"] for row in table.values()}) == len(table)


def test_every_type_has_a_sample_and_one_sample_has_a_type_the_table_lacks(table):
    types = {log["type"] for log in sample_logs()}
    assert types == set(table) | {UNKNOWN_TYPE}


# --- values are real or absent -------------------------------------------------------------


@pytest.mark.parametrize("nulls", ["null", "absent"])
def test_no_mapped_field_is_null_or_empty(knowledge, nulls):
    for sourcetype, samples in (
        ("auth0", stream_samples(knowledge, nulls)),
        ("auth0_activity", activity_samples(knowledge, nulls)),
    ):
        names = defined_fields(knowledge, sourcetype)
        for log, fields in samples:
            for name in names & set(fields):
                values = fields[name] if isinstance(fields[name], list) else [fields[name]]
                assert all(value not in ("", "null", None) for value in values), (log["log_id"], name, fields[name])


def test_a_null_gives_the_same_fields_however_splunk_spells_it(knowledge):
    names = defined_fields(knowledge, "auth0")
    spelled = stream_samples(knowledge, "null")
    absent = stream_samples(knowledge, "absent")
    for (log, one), (_log, other) in zip(spelled, absent):
        assert {n: one.get(n) for n in names} == {n: other.get(n) for n in names}, log["log_id"]


# --- Authentication -------------------------------------------------------------------


def test_a_wrong_password_and_an_unknown_user_are_failures_with_different_reasons(stream):
    (wrong_password,), (unknown_user,) = of_type(stream, "fp"), of_type(stream, "fu")
    for fields in (wrong_password, unknown_user):
        assert fields["action"] == "failure" and "authentication" in fields["tag"]
        assert fields["error_message"] == "Wrong email or password."  # Auth0's text is the same
    assert wrong_password["reason"] != unknown_user["reason"]
    assert (wrong_password["reason"], unknown_user["reason"]) == ("wrong password", "unknown user")


def test_logins_success_and_failure(stream, table):
    for code in ("s", "scoa", "sens"):
        for fields in of_type(stream, code):
            assert fields["action"] == "success" and fields["tag"] == ["authentication"], code
            assert "reason" not in fields
    for code in ("f", "fp", "fu", "fc", "fco", "fcoa", "fens"):
        for fields in of_type(stream, code):
            assert fields["action"] == "failure" and fields["tag"] == ["authentication"], code
            assert fields["reason"], code
    reasons = [of_type(stream, code)[0]["reason"] for code in ("f", "fp", "fu", "fc", "fco", "fcoa", "fens")]
    assert len(set(reasons)) == len(reasons)


def test_the_failure_message_comes_from_the_shape_each_type_has(stream):
    # details.error is an object on f/fp (error.message), a string on fn.
    assert {fields["error_message"] for fields in of_type(stream, "f")} == {"Invalid state", "Unauthorized"}
    (fn,) = of_type(stream, "fn")
    assert fn["error_message"] == "connect ETIMEDOUT 192.0.2.25:587"


def test_token_exchanges_and_silent_authentication_are_not_logins(stream, table):
    checked = 0
    for log, fields in stream:
        if log["type"] in table and TOKEN_EXCHANGE_OR_SILENT.match(table[log["type"]]["category"]):
            checked += 1
            assert "authentication" not in fields["tag"], log["type"]
    assert checked >= 30
    for code in ("ssa", "fsa", "sertft", "seacft", "sepft"):
        assert all("authentication" not in fields["tag"] for fields in of_type(stream, code))


def test_mfa_steps_are_authentications_tagged_multifactor(stream):
    for code, action in (
        ("gd_auth_succeed", "success"),
        ("gd_auth_failed", "failure"),
        ("gd_auth_rejected", "failure"),
        ("gd_recovery_succeed", "success"),
        ("gd_recovery_failed", "failure"),
    ):
        (fields,) = of_type(stream, code)
        assert fields["tag"] == ["authentication", "multifactor"], code
        assert fields["action"] == action, code
        # Auth0's schemas give some gd_* logs no application: the app is
        # Auth0 itself.
        if "data.client_id" not in fields:
            assert fields["app"] == "auth0", code
    assert not [field for field in of_type(stream, "gd_auth_succeed")[0] if field.startswith("data.client")]


def test_a_login_counts_once_whichever_sourcetype_brought_it(knowledge, stream):
    # The same s log, as the input writes it (auth0_activity) and as the log
    # stream sends it (auth0): one Authentication event each, the same fields.
    by_id = {log["log_id"]: fields for log, fields in stream}
    shared = ("action", "app", "src", "user", "user_id", "signature", "signature_id", "authentication_service")
    compared = 0
    for data, fields in activity_samples(knowledge):
        other = by_id[data["log_id"]]
        if data["type"] == "s":
            compared += 1
            assert [name for name in fields["eventtype"] if name in knowledge.tags] == ["auth0_authentication"]
            assert [name for name in other["eventtype"] if name in knowledge.tags] == ["auth0_authentication"]
            assert {n: fields.get(n) for n in shared} == {n: other.get(n) for n in shared}
            assert fields["signature"] == "Login"
    assert compared == 2
    # Every log is tagged into Authentication by one event type at most.
    for _log, fields in stream:
        assert len([name for name in fields["eventtype"] if "authentication" in knowledge.tags.get(name, [])]) <= 1


# --- Change ------------------------------------------------------------------------------


def test_a_signup_is_an_account_created_in_either_sourcetype(knowledge, stream):
    by_id = {log["log_id"]: fields for log, fields in stream}
    shared = ("action", "status", "change_type", "object_category", "command", "object_attrs", "object", "object_id")
    (data, fields), *_ = [(d, f) for d, f in activity_samples(knowledge) if d["type"] == "ss"]
    other = by_id[data["log_id"]]
    for found in (fields, other):
        assert found["action"] == "created" and found["status"] == "success"
        assert set(found["tag"]) == {"change", "account"} and "auth0_account_created" in found["eventtype"]
    assert {n: fields.get(n) for n in shared} == {n: other.get(n) for n in shared}
    (failed,) = of_type(stream, "fs")
    assert (failed["action"], failed["status"]) == ("created", "failure") and failed["result"]


def test_a_user_deletion_is_an_account_deleted(stream):
    (done,), (failed,) = of_type(stream, "sdu"), of_type(stream, "fdu")
    assert (done["action"], done["status"], done["object_category"]) == ("deleted", "success", "user")
    assert (failed["action"], failed["status"]) == ("deleted", "failure") and failed["result"]
    assert set(done["tag"]) == {"change", "account"}


def test_account_modifications_say_which_attribute(stream):
    expected = {
        "scp": "password",
        "fcp": "password",
        "sce": "email",
        "scu": "username",
        "scpn": "phone_number",
        "sv": "email_verified",
        "gd_enrollment_complete": "mfa_enrollment",
        "gd_unenroll": "mfa_enrollment",
        "ublkdu": "blocked",
    }
    for code, attribute in expected.items():
        (fields,) = of_type(stream, code)
        assert (fields["action"], fields["object_attrs"]) == ("modified", attribute), code
        assert fields["object"] == fields["user"] and fields["command"], code
        assert set(fields["tag"]) == {"change", "account"}, code


def test_a_management_api_write_names_the_admin_and_takes_its_action_from_the_method(stream):
    by_command = {fields["command"]: fields for fields in of_type(stream, "sapi")}
    block = by_command["PATCH /api/v2/users/auth0%7C65420aa17c3e4b5d6f7a8b9c"]
    assert (block["user"], block["action"], block["object_category"]) == ("ops.admin@acme.example", "modified", "users")
    assert (block["object_id"], block["object_attrs"], block["src"]) == (
        "auth0|65420aa17c3e4b5d6f7a8b9c",
        "blocked",
        "203.0.113.9",
    )
    created = by_command["POST /api/v2/users"]
    # A machine-to-machine application: no admin, the application acted.
    assert (created["user"], created["action"], created["object_id"]) == (
        "Acme Provisioning",
        "created",
        "auth0|6560aa00bb11cc22dd33ee44",
    )
    assert sorted(created["object_attrs"]) == ["connection", "email", "email_verified", "password"]
    deleted = by_command["DELETE /api/v2/connections/con_9pO8iU7yT6rE5wQ4"]
    assert (deleted["user"], deleted["action"], deleted["object_category"], deleted["object_attrs"]) == (
        "lena.admin@acme.example",
        "deleted",
        "connections",
        "connections",
    )
    for fields in by_command.values():
        assert fields["tag"] == ["change"] and fields["status"] == "success"
        assert "data.user_name" not in fields  # sapi logs have no user_name


def test_the_method_fields_and_the_table_never_both_apply(knowledge):
    # The OUTPUTNEW lookup fills action, command, object_attrs and
    # object_category only where the EVALs did not: the EVALs set all four
    # or none, so OUTPUTNEW's all-or-some reading cannot matter.
    stanza = knowledge.props["auth0"]
    names = ("action", "command", "object_attrs", "object_category")
    for log in sample_logs():
        event = stream_event(log)
        set_by_eval = {name for name in names if evaluate(Expr(stanza["EVAL-" + name]).tree, event) is not None}
        assert set_by_eval in (set(), set(names)), (log["type"], set_by_eval)


# --- Alerts ------------------------------------------------------------------------------


def test_attack_protection_and_rate_limits_are_alerts_with_a_severity(stream):
    expected = {
        "limit_wc": "attack_protection",
        "limit_mu": "attack_protection",
        "limit_sul": "attack_protection",
        "pwd_leak": "breached_password",
        "signup_pwd_leak": "breached_password",
        "reset_pwd_leak": "breached_password",
        "ferrt": "refresh_token_reuse",
        "gd_otp_rate_limit_exceed": "mfa_rate_limit",
        "gd_recovery_rate_limit_exceed": "mfa_rate_limit",
        "api_limit": "api_rate_limit",
    }
    for code, group in expected.items():
        for fields in of_type(stream, code):
            assert "alert" in fields["tag"] and fields["cim_alert"] == group, code
            assert fields["severity"] in ("critical", "high", "medium", "low", "informational"), code
            assert fields["type"] in ("alarm", "alert", "event", "task", "warning"), code
            assert fields["id"] == fields["data.log_id"], code


def test_a_blocked_account_is_an_alert_and_a_lockout(stream):
    (fields,) = of_type(stream, "limit_wc")
    assert set(fields["tag"]) == {"alert", "change", "account"}
    assert (fields["result"], fields["severity"]) == ("lockout", "high")
    (ip_block,) = of_type(stream, "limit_mu")
    assert ip_block["tag"] == ["alert"]


def test_the_alerts_name_a_source_and_user_even_for_an_applications_own_traffic(stream):
    # api_limit logs carry no ip: the application is the source.
    (fields,) = of_type(stream, "api_limit")
    assert "data.ip" not in fields and fields["src"] == "Acme Web Shop"


# --- unmapped types, and the table as the one source ---------------------------------------


def test_a_type_the_table_does_not_know_is_still_an_event_with_its_fields(stream):
    (fields,) = of_type(stream, UNKNOWN_TYPE)
    assert fields["eventtype"] == [] and fields["tag"] == []
    assert fields["data.details.anything.nested{}"] == ["kept", "as", "is"]
    assert fields["signature_id"] == UNKNOWN_TYPE and "action" not in fields and "description" not in fields


def test_the_evals_do_not_repeat_the_table(knowledge):
    # What a type means is the table's: no EVAL of the auth0 stanza compares
    # the log type with a code.
    for key, text in knowledge.props["auth0"].items():
        if key.startswith("EVAL-"):
            assert "data.type" not in expr_fields(Expr(text).tree) or key == "EVAL-signature_id", key
    for name, search in knowledge.eventtypes.items():
        codes = re.findall(r"data\.type=(\w+)", search)
        assert set(codes) <= {"s", "ss"}, (name, codes)  # the add-on's own verdict words, SPEC §5


def test_every_table_row_lands_where_its_columns_say(stream, table, knowledge):
    for log, fields in stream:
        row = table.get(log["type"])
        if row is None:
            continue
        tags = set(fields["tag"])
        assert ("authentication" in tags) == bool(row["cim_authentication"]), log["type"]
        assert ("multifactor" in tags) == (row["cim_authentication"] == "multifactor"), log["type"]
        assert ("change" in tags) == bool(row["cim_change"]), log["type"]
        assert ("account" in tags) == (row["cim_change"] == "account"), log["type"]
        assert ("alert" in tags) == bool(row["cim_alert"]), log["type"]
        assert fields["description"] == row["description"] and fields["category"] == row["category"]


def test_the_activity_events_get_the_tables_name_and_category(knowledge, table):
    for data, fields in activity_samples(knowledge):
        assert fields["type_description"] == table[data["type"]]["description"]
        assert fields["category"] == table[data["type"]]["category"]


def test_the_lookup_is_defined_and_applied_to_both_sourcetypes():
    transforms = conf("transforms.conf")
    assert transforms["auth0_log_types"]["filename"] == "auth0_log_types.csv"
    props = conf("props.conf")
    for sourcetype in ("auth0", "auth0_activity"):
        assert any(
            key.startswith("LOOKUP-") and value.split()[0] == "auth0_log_types"
            for key, value in props[sourcetype].items()
        ), sourcetype


def test_one_tenant_has_one_dest_whichever_way_its_logs_came(knowledge):
    # The input with collect = all stamps host with the tenant's domain, as
    # its auth0_activity events say it (`tenant`); Auth0's stream leaves host
    # to the HEC token, so there the tenant is Auth0's tenant name.
    (activity_data, activity), *_ = activity_samples(knowledge)
    domain = activity_data["tenant"]
    input_meta = {"source": "auth0", "sourcetype": "auth0", "host": domain, "index": "auth0"}
    for log in sample_logs():
        from_input = knowledge.fields(stream_event(log, meta=input_meta))
        assert from_input["dest"] == from_input["tenant"] == activity["dest"] == domain, log["type"]
        from_stream = knowledge.fields(stream_event(log))
        # (samples of types with no published schema may lack tenant_name)
        expected = log.get("tenant_name") or log.get("hostname") or "hec-01.acme.example"
        assert from_stream["dest"] == from_stream["tenant"] == expected, log["type"]
    assert sum(1 for log in sample_logs() if log.get("tenant_name") == "acme-prod") > 150


def base_search(search: str) -> str:
    """An alert's search up to its first pipe, the app's macros expanded."""
    macros = {name: stanza["definition"] for name, stanza in conf("macros.conf").items()}
    text = search.split("|", 1)[0]
    while "`" in text:
        text = re.sub(r"`([^`]+)`", lambda m: macros[m.group(1)], text)
    return text.strip()


@pytest.mark.parametrize(
    "alert, types",
    [
        (
            "Auth0 - Brute force or blocked IP",
            {"f", "fp", "fu", "fc", "fco", "fcoa", "fens", "limit_wc", "limit_mu", "limit_sul"},
        ),
        ("Auth0 - Breached password used", {"pwd_leak", "signup_pwd_leak", "reset_pwd_leak"}),
        ("Auth0 - Refresh token reuse", {"ferrt"}),
    ],
)
def test_each_security_alert_reads_the_logs_it_is_about(knowledge, stream, alert, types):
    stanza = conf("savedsearches.conf")[alert]
    assert stanza["disabled"] == "1"
    search = base_search(stanza["search"])
    found = {log["type"] for log, fields in stream if matches(search, fields)}
    assert found == types


@pytest.mark.parametrize("separators", [(",", ":"), (", ", ": ")], ids=["compact", "spaced"])
def test_time_is_the_logs_date_where_splunk_reads_it_from_the_text(knowledge, separators):
    # Files, HEC raw and replays: the modular input's <time> and HEC's event
    # endpoint never get here.
    stanza = knowledge.props["auth0"]
    prefix = re.compile(stanza["TIME_PREFIX"])
    lookahead = int(stanza["MAX_TIMESTAMP_LOOKAHEAD"])
    fmt = stanza["TIME_FORMAT"].replace("%3N", "%f")
    assert stanza["TZ"] == "UTC"
    for log in sample_logs():
        raw = json.dumps({"log_id": log["log_id"], "data": log}, separators=separators)
        match = prefix.search(raw)
        assert match, log["type"]
        text = raw[match.end() :].split('"', 1)[0]
        assert text == log["date"] and len(text) <= lookahead
        datetime.strptime(text, fmt)


def test_the_lookups_of_the_auth0_stanza_read_and_write_what_exists(knowledge, table):
    stanza = knowledge.props["auth0"]
    computed = {key[len("EVAL-") :] for key in stanza if key.startswith("EVAL-")}
    columns = set(next(iter(table.values())))
    for key in sorted(key for key in stanza if key.startswith("LOOKUP-")):
        lookup = Lookup(stanza[key])
        assert lookup.table == "auth0_log_types" and lookup.inputs == [("type", "data.type")]
        assert {column for column, _field in lookup.outputs} <= columns, key
        outputs = {field for _column, field in lookup.outputs}
        if lookup.mode == "OUTPUT":
            assert not outputs & computed, (key, outputs & computed)
        else:  # only what the Management API EVALs compute, and the table otherwise
            assert outputs == {"action", "command", "object_attrs", "object_category"} <= computed
