"""Search-time knowledge (issue 4): props, eventtypes, tags, macros, the
dashboard, the alerts and README's searches use only fields that exist.

Where the fields come from:
- the events of a real run of the collector over the seeded local tenant
  (`seeded_run_events`), checked against the contract's key list (SPEC §4);
- the fields default/props.conf computes (EVAL, FIELDALIAS, EXTRACT), each
  EVAL also *evaluated* on those events, so the CIM values are tested, not
  just the names;
- the lines ta_auth0.log gets from real runs (for the input-health searches);
- Splunk's own fields and what each SPL command outputs.

The searches are read by tests/spl.py: it follows the fields through the
pipes (after `stats` only its outputs exist), checks literal values of
enumerated fields (`status=="ok"`, `message=Signup`), and fails on any
command, option or function it does not know, so a search it cannot check
fails rather than passes. The last tests here show that it does fail.
"""

from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, FrozenSet, List, Mapping, Set, Tuple

import pytest
from addonfactory_splunk_conf_parser_lib import TABConfigParser

from tests.spl import (
    SPLUNK_FIELDS,
    Dataset,
    Expr,
    Lookup,
    Spl,
    SplError,
    evaluate,
    expr_fields,
    matches,
)

REPO = Path(__file__).resolve().parent.parent
DEFAULT = REPO / "default"
DASHBOARD = DEFAULT / "data" / "ui" / "views" / "auth0_activity.xml"
SECURITY_DASHBOARD = DEFAULT / "data" / "ui" / "views" / "auth0_security.xml"
DASHBOARDS = sorted(DASHBOARD.parent.glob("*.xml"))
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "knowledge"
LOOKUP_TABLE = REPO / "lookups" / "auth0_log_types.csv"
README_FILES = (REPO / "README.md",)

# SPEC §4 and the collector's contract: the keys of every event, in order.
CONTRACT_KEYS = (
    "message",
    "application",
    "clientIP",
    "protocol",
    "userName",
    "userId",
    "log_id",
    "date",
    "type",
    "description",
    "connection",
    "connection_id",
    "strategy",
    "strategy_type",
    "client_id",
    "user_agent",
    "hostname",
    "loginsCount",
    "tenant",
)
# The contract of ta_auth0.log (fixed, like the events'): enumerated values.
LOG_ENUMS = {
    "status": {"ok", "incomplete", "error"},
    "log_level": {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"},
    "caught_up": {"true", "false"},
}
# Event fields whose values a search may only compare with values they take.
EVENT_ENUM_FIELDS = ("message", "type", "signature", "signature_id", "action", "strategy_type")
# The same on auth0 events: the log type, and the table's columns.
STREAM_ENUM_FIELDS = (
    "data.type",
    "signature_id",
    "action",
    "reason",
    "status",
    "result",
    "severity",
    "type",
    "outcome",
    "category",
    "cim_authentication",
    "cim_change",
    "cim_alert",
    "object_category",
    "data.strategy_type",
)

# CIM 6.2 data model fields (Splunk_SA_CIM), for `from datamodel=` searches
# and to check that props.conf only defines fields of the models it tags for.
CIM_MODELS = {
    "Authentication": (
        "Authentication",
        frozenset(
            "action app authentication_method authentication_service dest duration reason response_time signature "
            "signature_id src src_user src_user_role src_user_type tag user user_agent user_id user_role user_type "
            "vendor_account".split()
        ),
    ),
    "Change": (
        "All_Changes",
        frozenset(
            "action change_type command dest dest_nt_domain dvc object object_attrs object_category object_id "
            "object_path result result_id src src_nt_domain src_user src_user_name src_user_type status tag user "
            "user_agent user_name user_type vendor_account vendor_product vendor_region".split()
        ),
    ),
}
CIM_MODELS["Alerts"] = (
    "Alerts",
    frozenset(
        "app body description dest dest_type id mitre_technique_id signature signature_id severity severity_id src "
        "src_type subject tag type user user_name vendor_account vendor_region".split()
    ),
)
DATA_MODEL_INHERITED = frozenset({"_time", "host", "source", "sourcetype"})


# --- .conf files ----------------------------------------------------------------


def conf(name: str) -> Dict[str, Dict[str, str]]:
    """A default/*.conf file as Splunk's own .conf parser library reads it."""
    parser = TABConfigParser()
    with open(DEFAULT / name, encoding="utf-8") as handle:
        parser.read_file(handle)
    # The library keeps the `\` of a continued line (its rstrip meets the
    # newline first); Splunk drops it and keeps the line break.
    return {
        stanza: {key: value.replace("\\\n", "\n") for key, value in settings.items()}
        for stanza, settings in parser.item_dict().items()
    }


def csv_header(path: Path) -> List[str]:
    with open(path, encoding="utf-8", newline="") as handle:
        return next(csv.reader(handle))


def shipped_confs() -> List[str]:
    return sorted(path.name for path in DEFAULT.glob("*.conf"))


def conf_lines(name: str) -> List[Tuple[int, str]]:
    """(line number, logical line) with continuations joined, comments dropped."""
    out: List[Tuple[int, str]] = []
    pending = ""
    start = 0
    for number, line in enumerate((DEFAULT / name).read_text(encoding="utf-8").splitlines(), 1):
        if not pending and (not line.strip() or line.lstrip()[:1] in "#;"):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        out.append((start, pending + line))
        pending = ""
    assert not pending, f"{name}: the file ends inside a continued line"
    return out


def props_stanza(stanza: str) -> Dict[str, str]:
    return conf("props.conf")[stanza]


def eval_definitions(stanza: Mapping[str, str]) -> Dict[str, str]:
    return {key[len("EVAL-") :]: value for key, value in stanza.items() if key.startswith("EVAL-")}


def lookup_definitions(stanza: Mapping[str, str]) -> List[Lookup]:
    return [Lookup(value) for key, value in sorted(stanza.items()) if key.startswith("LOOKUP-")]


def alias_definitions(stanza: Mapping[str, str]) -> Dict[str, str]:
    """FIELDALIAS-class = source AS target [source AS target ...] -> {target: source}."""
    aliases = {}
    for key, value in stanza.items():
        if key.startswith("FIELDALIAS-"):
            words = value.split()
            assert len(words) % 3 == 0 and all(w.lower() in ("as", "asnew") for w in words[1::3]), value
            for source, _as, target in zip(words[0::3], words[1::3], words[2::3]):
                aliases[target] = source
    return aliases


def extract_groups(stanza: Mapping[str, str]) -> Dict[str, str]:
    """{field: EXTRACT class} for every named group of every EXTRACT-."""
    groups = {}
    for key, value in stanza.items():
        if key.startswith("EXTRACT-"):
            for name in re.findall(r"\(\?P?<([A-Za-z_]\w*)>", value):
                groups[name] = key
    return groups


def python_regex(pcre: str) -> re.Pattern:
    """Splunk's PCRE named groups (?<name>...) in Python's spelling."""
    return re.compile(re.sub(r"\(\?<(?=[A-Za-z_])", "(?P<", pcre))


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def props():
    return props_stanza("auth0_activity")


@pytest.fixture(scope="module")
def log_props():
    return props_stanza("source::...ta_auth0.log*")


@pytest.fixture(scope="module")
def raw_fields(seeded_run_events) -> FrozenSet[str]:
    """Keys the collector really wrote, with a value in at least one event."""
    return frozenset(
        key for event in seeded_run_events for key, value in event.items() if key != "_meta" and value is not None
    )


def event_variants(event: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """How Splunk may show the JSON nulls of an event: absent, or "null"."""
    absent = {key: value for key, value in event.items() if value is not None}
    as_text = {key: ("null" if value is None else value) for key, value in event.items()}
    return [absent, as_text]


def cim_fields(props: Mapping[str, str], event: Mapping[str, Any]) -> Dict[str, Any]:
    """The event with props.conf's aliases and EVALs applied, as Splunk does:
    aliases first, then every EVAL from the fields before any EVAL."""
    fields = {key: value for key, value in event.items() if key != "_meta"}
    fields.update({key: event["_meta"][key] for key in ("host", "source", "sourcetype", "index")})
    for target, source in alias_definitions(props).items():
        if source in fields:
            fields[target] = fields[source]
    computed = {name: evaluate(Expr(text).tree, fields) for name, text in eval_definitions(props).items()}
    fields.update(computed)
    return {key: value for key, value in fields.items() if value is not None}


@pytest.fixture(scope="module")
def cim_events(props, seeded_run_events):
    return [(event, cim_fields(props, event)) for event in seeded_run_events]


@pytest.fixture(scope="module")
def real_log(ca, tmp_path_factory):
    """ta_auth0.log after real runs over the seeded tenant: a normal run, then
    one whose checkpoint fell out of Auth0's retention (as in SPEC §7)."""
    from tests.conftest import Bed
    from tests.fakes.seed import load_seed
    from tests.fakes.splunkd import FakeSplunkd
    from tests.fakes.tenant import FakeTenant, iso_ms

    root = str(tmp_path_factory.mktemp("knowledge-log"))
    with FakeTenant(ca=ca) as tenant, FakeSplunkd(ca.server_ssl_context()) as splunkd:
        bed = Bed(tenant, load_seed(tenant), splunkd, root, ca)
        first = bed.run(update_metadata="false")  # flag writes would add logs dated now
        assert first.returncode == 0, first.stderr
        newest = max(log["date"] for log in tenant.logs if log.get("date"))
        later = datetime.fromisoformat(newest.replace("Z", "+00:00")).timestamp() + 60
        for offset, count in ((1, 3), (2, 3), (90, 2)):
            tenant.add_log(
                {
                    "type": "s",
                    "date": iso_ms(later + offset),
                    "user_id": f"auth0|knowledge{offset}",
                    "user_name": f"k{offset}@example.com",
                    "details": {"prompts": [{"name": "login", "stats": {"loginsCount": count}}]},
                }
            )
        tenant.purge_before(iso_ms(later + 30))  # the checkpoint and two logs are gone
        second = bed.run()
        assert second.returncode == 0, second.stderr
        lines = Path(bed.log_file).read_text(encoding="utf-8").splitlines()
    return {"lines": lines, "summaries": [first.summary(), second.summary()]}


def stream_dataset() -> Dataset:
    """What a search of `sourcetype=auth0` events finds: every field of the
    sample logs of every type (tests/knowledge.py) after props.conf, with the
    values the enumerated ones take."""
    from tests.knowledge import Knowledge, stream_samples

    knowledge = Knowledge()
    samples = stream_samples(knowledge) + stream_samples(knowledge, nulls="absent")
    fields = {name for _log, found in samples for name in found if name != "_meta"}
    enums: Dict[str, Set[str]] = {}
    for field in STREAM_ENUM_FIELDS:
        for _log, found in samples:
            value = found.get(field)
            for item in value if isinstance(value, list) else [] if value is None else [value]:
                enums.setdefault(field, set()).add(str(item))
    return Dataset("auth0 events", fields, enums)


@pytest.fixture(scope="module")
def spl(props, log_props, raw_fields, cim_events) -> Spl:
    defined = set(eval_definitions(props)) | set(alias_definitions(props)) | set(extract_groups(props))
    defined |= {field for lookup in lookup_definitions(props) for _column, field in lookup.outputs}
    event_enums = {
        field: {str(cim[field]) for _event, cim in cim_events if field in cim} for field in EVENT_ENUM_FIELDS
    }
    events = Dataset("auth0_activity events", raw_fields | defined, event_enums)
    log_fields = set(extract_groups(log_props))
    log = Dataset("ta_auth0.log", log_fields, LOG_ENUMS)
    macros = {name: stanza["definition"] for name, stanza in conf("macros.conf").items()}
    tags = {tag for stanza in conf("tags.conf").values() for tag in stanza}
    model_fields = {}
    for model, (root, names) in CIM_MODELS.items():
        model_fields[model] = {f"{root}.{name}" for name in names & (defined | raw_fields)} | DATA_MODEL_INHERITED
    stream = stream_dataset()
    for model, (root, names) in CIM_MODELS.items():
        model_fields[model] |= {f"{root}.{name}" for name in names & stream.fields}
    return Spl(events, log, macros, conf("eventtypes.conf"), tags, model_fields, stream=stream)


@pytest.fixture(scope="module")
def spl_with_log(spl, real_log) -> Spl:
    spl.log.phrases = real_log["lines"]
    return spl


# --- the collector's events are the contract -------------------------------------


def test_seeded_run_writes_the_contract_keys_in_order(seeded_run_events):
    for event in seeded_run_events:
        assert tuple(key for key in event if key != "_meta") == CONTRACT_KEYS
        meta = event["_meta"]
        assert (meta["source"], meta["sourcetype"]) == ("auth0", "auth0_activity")
        assert meta["host"] == event["tenant"]


def test_seeded_run_covers_every_kind_of_event(seeded_run_events):
    # Otherwise the checks below would pass on fewer cases than they claim.
    kinds = {(event["type"], event["message"]) for event in seeded_run_events}
    assert {("ss", "Signup"), ("s", "Signup"), ("s", "Login")} <= kinds
    assert {event["strategy_type"] for event in seeded_run_events} >= {"database", "social"}


# --- the .conf files parse and say each thing once ---------------------------------


def test_every_conf_parses_with_splunks_parser():
    names = shipped_confs()
    for required in ("props.conf", "eventtypes.conf", "tags.conf", "savedsearches.conf", "macros.conf"):
        assert required in names
    assert "limits.conf" not in names  # AppInspect fails it
    for name in names:
        stanzas = conf(name)
        assert stanzas, f"{name} has no stanza"
        parser = TABConfigParser()
        parser.read(DEFAULT / name, encoding="utf-8")
        assert not parser.fields_outside_stanza, f"{name}: settings outside any stanza"


@pytest.mark.parametrize("name", shipped_confs())
def test_no_stanza_or_setting_is_given_twice(name):
    # Splunk silently keeps the last one; the parser library too.
    seen_stanzas: Set[str] = set()
    keys: Set[str] = set()
    for number, line in conf_lines(name):
        stripped = line.strip()
        if stripped.startswith("["):
            assert stripped not in seen_stanzas, f"{name}:{number}: {stripped} again"
            seen_stanzas.add(stripped)
            keys = set()
            continue
        key = stripped.split("=", 1)[0].strip()
        assert key not in keys, f"{name}:{number}: {key} given twice in one stanza"
        keys.add(key)


def test_continued_lines_do_not_start_like_a_comment():
    # The parser (like Splunk) would drop them from the value.
    for name in shipped_confs():
        lines = (DEFAULT / name).read_text(encoding="utf-8").splitlines()
        for before, line in zip(lines, lines[1:]):
            if before.endswith("\\"):
                assert line.lstrip()[:1] not in ("#", ";", "*", ""), f"{name}: {line!r}"


# --- props.conf: parsing -------------------------------------------------------------


def splunk_time_format(fmt: str) -> str:
    return fmt.replace("%3N", "%f")


def test_props_extracts_json_at_search_time_only(props):
    assert props["KV_MODE"] == "json"
    assert "INDEXED_EXTRACTIONS" not in props  # would extract every field twice
    assert props["SHOULD_LINEMERGE"] == "false"


def test_props_time_is_the_logs_date_with_milliseconds(props, seeded_run_events):
    from ta_auth0.activity import to_json

    prefix = python_regex(props["TIME_PREFIX"])
    lookahead = int(props["MAX_TIMESTAMP_LOOKAHEAD"])
    assert props["TZ"] == "UTC"
    dated = [event for event in seeded_run_events if event["date"]]
    assert dated
    for event in dated:
        raw = to_json({key: value for key, value in event.items() if key != "_meta"})
        match = prefix.search(raw)
        assert match, raw
        text = raw[match.end() :].split('"', 1)[0]
        assert len(text) <= lookahead
        moment = datetime.strptime(text, splunk_time_format(props["TIME_FORMAT"])).replace(tzinfo=timezone.utc)
        assert abs(moment.timestamp() - float(event["_meta"]["time"])) < 0.0005, (text, event["_meta"]["time"])


def test_props_time_prefix_ignores_a_date_inside_a_value(props):
    from ta_auth0.activity import to_json

    prefix = python_regex(props["TIME_PREFIX"])
    data = dict.fromkeys(CONTRACT_KEYS)
    data.update(application='x","date":"1999-01-01T00:00:00.000Z', date="2026-11-20T10:11:12.345Z")
    raw = to_json(data)
    assert raw[prefix.search(raw).end() :].startswith("2026-11-20T10:11:12.345Z")


def test_props_line_breaking_keeps_each_event_whole(props, seeded_run_events):
    from ta_auth0.activity import to_json

    breaker = python_regex(props["LINE_BREAKER"])
    longest = 0
    for event in seeded_run_events:
        raw = to_json({key: value for key, value in event.items() if key != "_meta"})
        assert not breaker.search(raw)
        longest = max(longest, len(raw.encode("utf-8")))
    assert int(props["TRUNCATE"]) >= max(10000, 20 * longest)


# --- props.conf: the CIM mapping ------------------------------------------------------


def test_every_eval_and_alias_reads_only_fields_the_collector_writes(props, raw_fields):
    assert set(raw_fields) <= set(CONTRACT_KEYS)
    readable = set(raw_fields) | SPLUNK_FIELDS
    for target, source in alias_definitions(props).items():
        assert source in readable, f"FIELDALIAS {source} AS {target}: {source} is not written"
    for name, text in eval_definitions(props).items():
        # EVALs run side by side: one cannot read another's result.
        missing = expr_fields(Expr(text).tree) - readable
        assert not missing, f"EVAL-{name} reads {missing}, which the collector does not write"
    assert not [key for key in props if key.startswith("REPORT-")], "teach this test REPORT"
    computed = set(eval_definitions(props)) | set(alias_definitions(props))
    columns = set(csv_header(LOOKUP_TABLE))
    for lookup in lookup_definitions(props):
        for _column, field in lookup.inputs:
            assert field in raw_fields, f"the lookup {lookup.table} reads {field}, which the collector does not write"
        for column, field in lookup.outputs:
            assert column in columns, f"{lookup.table} has no column {column}"
            # Nothing both computed and looked up: which would win depends on
            # OUTPUT's handling of a row with no value, which we do not rely on.
            assert field not in computed | readable, f"{field} is both looked up and computed or extracted"


def test_props_defines_only_cim_fields(props):
    cim = set().union(*(names for _root, names in CIM_MODELS.values()))
    defined = set(eval_definitions(props)) | set(alias_definitions(props))
    assert defined <= cim, defined - cim


def test_null_spelled_any_way_gives_the_same_cim_fields(props, seeded_run_events):
    for event in seeded_run_events:
        variants = []
        for variant in event_variants(event):
            variant["_meta"] = event["_meta"]
            fields = cim_fields(props, variant)
            variants.append({name: fields.get(name) for name in eval_definitions(props)})
        assert variants[0] == variants[1], event["log_id"]
        assert "null" not in variants[0].values() and "" not in variants[0].values()


def eventtype_searches() -> Dict[str, str]:
    return {name: stanza["search"] for name, stanza in conf("eventtypes.conf").items()}


def tagged(tag: str) -> List[str]:
    return [stanza.split("=", 1)[1] for stanza, tags in conf("tags.conf").items() if tags.get(tag) == "enabled"]


def test_eventtypes_split_events_as_the_add_on_does(seeded_run_events):
    searches = eventtype_searches()
    assert {"auth0_activity", "auth0_signup", "auth0_login"} <= set(searches)
    for event in seeded_run_events:
        assert matches(searches["auth0_activity"], event)
        assert matches(searches["auth0_signup"], event) == (event["message"] == "Signup")
        assert matches(searches["auth0_login"], event) == (event["message"] == "Login")


def test_tags_map_each_event_to_exactly_one_cim_dataset(seeded_run_events):
    searches = eventtype_searches()
    authentication, account = tagged("authentication"), tagged("account")
    # Account changes are Change events; Management API changes (auth0
    # events only) are Change events without the account tag.
    assert authentication and account and set(account) < set(tagged("change"))
    for event in seeded_run_events:
        auth = any(matches(searches[name], event) for name in authentication)
        created = any(matches(searches[name], event) for name in account)
        assert auth != created, event["log_id"]
        assert created == (event["type"] == "ss")


def test_no_tag_claims_default_or_privileged_accounts():
    # Default_Authentication is for default accounts (admin, root, vendor
    # defaults); Privileged_Authentication for administrators. Auth0 end users
    # are neither.
    for stanza, tags in conf("tags.conf").items():
        assert stanza.startswith("eventtype=") and stanza.split("=", 1)[1] in eventtype_searches()
        assert set(tags) <= {"authentication", "multifactor", "change", "account", "alert"}, (stanza, tags)


def present(value: Any) -> Any:
    """A value as a CIM field holds it: None for null, "null" or empty."""
    return None if value in (None, "", "null") else value


def test_authentication_events_carry_the_cim_fields(props, cim_events):
    searches = eventtype_searches()
    checked = 0
    for event, cim in cim_events:
        if not any(matches(searches[name], event) for name in tagged("authentication")):
            continue
        checked += 1
        # CIM's required Authentication fields first.
        assert cim["action"] == "success"
        assert cim.get("app") == (present(event["application"]) or present(event["client_id"]))
        assert cim.get("src") == present(event["clientIP"])
        assert cim.get("user") == (present(event["userName"]) or present(event["userId"]))
        assert cim["dest"] == cim["vendor_account"] == event["tenant"] == event["_meta"]["host"]
        assert cim.get("user_id") == present(event["userId"])
        assert cim["signature"] == event["message"] and cim["signature_id"] == event["type"]
        assert cim.get("authentication_service") == present(event["connection"])
        assert cim.get("authentication_method") == present(event["strategy_type"])
        assert cim.get("reason") == present(event["description"])
        assert cim["vendor_product"] == "Auth0"
        assert not {"object", "object_category", "change_type", "status", "dvc", "src_user"} & set(cim)
    assert checked


def test_signup_accounts_carry_the_change_fields(cim_events):
    checked = 0
    for event, cim in cim_events:
        if event["type"] != "ss":
            continue
        checked += 1
        user = present(event["userName"]) or present(event["userId"])
        assert cim["action"] == "created"
        assert cim["object_category"] == "user" and cim["change_type"] == "AAA" and cim["status"] == "success"
        assert cim.get("object") == cim.get("user") == cim.get("src_user") == user
        assert cim.get("object_id") == present(event["userId"])
        assert cim["dest"] == cim["dvc"] == event["tenant"]
        assert cim.get("src") == present(event["clientIP"]) and cim["vendor_product"] == "Auth0"
    assert checked


def test_the_original_rules_events_keep_working(props):
    # Events the Auth0 rule sent (six keys, "SignUp" spelled its way) are found
    # by the same event types and map to the same CIM fields.
    searches = eventtype_searches()
    rule_events = json.loads((FIXTURES / "original_rule_events.json").read_text(encoding="utf-8"))
    assert {event["message"] for event in rule_events} == {"SignUp", "Login"}
    for event in rule_events:
        cim = cim_fields(props, event)
        assert matches(searches["auth0_signup"], event) == (event["message"] == "SignUp")
        assert matches(searches["auth0_login"], event) == (event["message"] == "Login")
        assert any(matches(searches[name], event) for name in tagged("authentication"))
        assert not any(matches(searches[name], event) for name in tagged("account"))
        assert cim["signature"] == {"SignUp": "Signup", "Login": "Login"}[event["message"]]
        assert (cim["action"], cim["user"], cim["src"], cim["app"]) == (
            "success",
            event["userName"],
            event["clientIP"],
            event["application"],
        )


# --- ta_auth0.log ------------------------------------------------------------------


def test_log_extractions_read_real_log_lines(log_props, real_log):
    lines = real_log["lines"]
    line_regex = python_regex(log_props["EXTRACT-ta_auth0_line"])
    fmt = splunk_time_format(log_props["TIME_FORMAT"])
    for line in lines:
        match = line_regex.match(line)
        assert match, line
        assert match.group("log_level") in LOG_ENUMS["log_level"]
        stamp = line.split(" ", 1)[0]
        assert len(stamp) <= int(log_props["MAX_TIMESTAMP_LOOKAHEAD"])
        datetime.strptime(stamp, fmt)
    summaries = [line for line in lines if "run summary: " in line]
    assert len(summaries) == len(real_log["summaries"])
    extracts = {key: python_regex(value) for key, value in log_props.items() if key.startswith("EXTRACT-summary_")}
    for line, expected in zip(summaries, real_log["summaries"]):
        found = {}
        for regex in extracts.values():
            match = regex.search(line)
            if match:
                found.update(match.groupdict())
        wanted = {key: value for key, value in expected.items() if value != "-"}
        assert found == wanted, line
    assert set(extract_groups(log_props)) >= set(real_log["summaries"][0])
    assert any(line for line in lines if "fallen out of Auth0's log retention" in line)


# --- searches: eventtypes, dashboard, alerts, README -----------------------------------


def test_eventtype_searches_use_real_fields(spl):
    for name, search in eventtype_searches().items():
        state = spl.analyze(search)
        assert state.dataset is not spl.log, name
        reads = spl.eventtype_sourcetypes[name]
        assert reads <= {"auth0_activity", "auth0"}, (name, reads)
        assert (state.dataset is spl.events) == (reads == {"auth0_activity"}), name
        assert (state.dataset is spl.stream) == (reads == {"auth0"}), name


def dashboard(path: Path = DASHBOARD) -> Tuple[ET.Element, Dict[str, Any]]:
    root = ET.parse(path).getroot()
    return root, json.loads(root.findtext("definition"))


TOKEN = re.compile(r"\$([A-Za-z_][\w.]*)\$")


def test_both_dashboards_are_there():
    assert DASHBOARDS == sorted([DASHBOARD, SECURITY_DASHBOARD])


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.stem)
def test_dashboard_is_a_valid_studio_dashboard(path):
    root, definition = dashboard(path)
    # Dashboard Studio: version 2 (Simple XML would need version 1.1 for AppInspect).
    assert root.tag == "dashboard" and root.get("version") == "2"
    assert root.findtext("label")
    assert set(definition) <= {"title", "description", "inputs", "defaults", "visualizations", "dataSources", "layout"}
    sources, visuals, inputs = definition["dataSources"], definition["visualizations"], definition["inputs"]
    for name, source in sources.items():
        assert source["type"] == "ds.search", name
        assert source["options"]["query"].strip(), name
    for name, item in list(visuals.items()) + list(inputs.items()):
        for ref in item.get("dataSources", {}).values():
            assert ref in sources, f"{name} uses an undefined data source {ref}"
    items = list(visuals.values()) + list(inputs.values())
    used = {ref for item in items for ref in item.get("dataSources", {}).values()}
    assert used == set(sources), f"data sources nobody shows: {set(sources) - used}"
    layout = definition["layout"]
    placed = [block["item"] for block in layout["structure"]]
    assert sorted(placed) == sorted(visuals), "every visualization placed exactly once"
    assert sorted(layout["globalInputs"]) == sorted(inputs)
    width = layout.get("options", {}).get("width", 1200)
    for block in layout["structure"]:
        position = block["position"]
        assert 0 <= position["x"] and position["x"] + position["w"] <= width, block
    for name, item in visuals.items():
        assert item["type"].startswith("splunk."), name


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.stem)
def test_dashboard_tokens_are_defined_and_used(path):
    _root, definition = dashboard(path)
    text = json.dumps(definition)
    defined = {item["options"]["token"] for item in definition["inputs"].values()}
    used = {name.split(".")[0] for name in TOKEN.findall(text)}
    assert used == defined


def test_dashboard_has_the_panels_the_issue_asks_for():
    _root, definition = dashboard()
    queries = [source["options"]["query"] for source in definition["dataSources"].values()]
    types = {item["type"] for item in definition["visualizations"].values()}
    assert "splunk.map" in types
    assert any("iplocation" in query and "geostats" in query for query in queries)
    assert any("index=_internal" in query for query in queries)
    tenant = [item for item in definition["inputs"].values() if item["type"] == "input.dropdown"]
    assert tenant and tenant[0]["options"]["token"] == "tenant"
    # Both sourcetypes, through the app's macros, so a site that only streams
    # logs sees its signups and logins too; every one filtered by tenant.
    event_queries = [query for query in queries if "`auth0_signups_and_logins`" in query]
    assert len(event_queries) >= 8 and all('dest="$tenant$"' in query for query in event_queries)
    assert not [query for query in queries if "sourcetype=auth0_activity" in query]


def test_the_security_dashboard_has_the_panels_the_issue_asks_for():
    _root, definition = dashboard(SECURITY_DASHBOARD)
    queries = [source["options"]["query"] for source in definition["dataSources"].values()]
    joined = " ".join(queries)
    # failed logins by reason over time; top failing sources and users
    assert any("timechart" in q and 'reason=="wrong password"' in q and 'reason=="unknown user"' in q for q in queries)
    assert any("action=failure" in q and q.split("|")[1].strip().endswith("by src") for q in queries)
    assert any("action=failure" in q and q.split("|")[1].strip().endswith("by user") for q in queries)
    # blocks and breached passwords, MFA outcomes, admin changes
    for needle in ("cim_alert=attack_protection", "cim_alert=breached_password", "eventtype=auth0_multifactor"):
        assert needle in joined, needle
    assert "eventtype=auth0_admin_change" in joined
    event_queries = [q for q in queries if "`auth0_sourcetypes` dest=" in q]
    assert len(event_queries) == len(queries) - 1 and all('dest="$tenant$"' in q for q in event_queries)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.stem)
def test_dashboard_searches_use_real_fields(spl_with_log, path):
    _root, definition = dashboard(path)
    outputs = {}
    for name, source in definition["dataSources"].items():
        query = TOKEN.sub("*", source["options"]["query"])
        try:
            outputs[name] = spl_with_log.analyze(query).outputs
        except SplError as exc:
            raise AssertionError(f"{name}: {exc}") from None
    series = re.compile(r"seriesByName\(['\"]([^'\"]+)['\"]\)")
    for name, item in list(definition["visualizations"].items()) + list(definition["inputs"].items()):
        source = item.get("dataSources", {}).get("primary")
        for field in series.findall(json.dumps(item)):
            assert field in outputs[source], f"{name} shows {field!r}, which {source} does not output"


def test_the_app_menu_opens_the_dashboard():
    nav = ET.parse(DEFAULT / "data" / "ui" / "nav" / "default.xml").getroot()
    views = [element.get("name") for element in nav.iter("view")]
    ours = {path.stem for path in DASHBOARD.parent.glob("*.xml")}
    # The rest are views every Splunk app has.
    assert set(views) - ours <= {"search", "alerts", "dashboards", "reports", "datasets"}
    assert [element.get("name") for element in nav.iter("view") if element.get("default") == "true"] == [DASHBOARD.stem]
    assert {path.stem for path in DASHBOARDS} <= set(views)


def saved_searches() -> Dict[str, Dict[str, str]]:
    return conf("savedsearches.conf")


def test_alerts_ship_disabled_with_bounded_schedules():
    searches = saved_searches()
    assert len(searches) >= 2
    for name, stanza in searches.items():
        assert stanza["disabled"] == "1", name
        if stanza.get("enableSched") == "1":
            assert "dispatch.earliest_time" in stanza and "dispatch.latest_time" in stanza, name
            minutes = stanza["cron_schedule"].split()
            assert len(minutes) == 5, name
            step = re.fullmatch(r"\*/(\d+)", minutes[0])
            assert not step or int(step.group(1)) >= 5, f"{name} runs more than 12 times an hour"
            assert minutes[0] != "*", name


def test_alert_searches_use_real_fields(spl_with_log):
    for name, stanza in saved_searches().items():
        try:
            spl_with_log.analyze(stanza["search"])
        except SplError as exc:
            raise AssertionError(f"[{name}]: {exc}") from None


def readme_searches() -> List[str]:
    blocks = []
    for path in README_FILES:
        if path.exists():
            blocks += re.findall(r"```spl\n(.*?)```", path.read_text(encoding="utf-8"), re.S)
    return [" ".join(block.split()) for block in blocks]


def test_readme_searches_use_real_fields(spl_with_log):
    searches = readme_searches()
    assert len(searches) >= 4, "README's ```spl blocks (the Searching section)"
    for search in searches:
        try:
            spl_with_log.analyze(search)
        except SplError as exc:
            raise AssertionError(f"{search}: {exc}") from None


# --- the analyzer can fail (a checker that cannot fail checks nothing) ----------------


@pytest.mark.parametrize(
    "search, complaint",
    [
        ("`auth0_index` sourcetype=auth0_activity | stats count by username", "username"),
        ("`auth0_index` sourcetype=auth0_activity | timechart count by message", "timechart"),
        ("`auth0_index` sourcetype=auth0_activity message=SignIn", "SignIn"),
        ('`auth0_index` sourcetype=auth0_activity | where signature=="SignUp"', "SignUp"),
        ("`auth0_index` sourcetype=auth0_activity | stats count by src | table src user", "user"),
        ("`auth0_index` sourcetype=auth0_activity | eval x=nulif(src, 1)", "nulif"),
        ("`auth0_index` sourcetype=auth0_activity | transaction user", "transaction"),
        ("`auth0_indexes` sourcetype=auth0_activity", "auth0_indexes"),
        ("index=main sourcetype=syslog", "neither"),
        ('index=_internal source=*ta_auth0.log* status="success"', "success"),
        ('index=_internal source=*ta_auth0.log* "run finished:"', "run finished:"),
        ('index=_internal source=*ta_auth0.log* | where like(log_message, "%fell out of retention%")', "fell out"),
        ("| tstats count where `auth0_index` sourcetype=auth0_activity by user", "user"),
        ("| tstats count from datamodel=Authentication by Authentication.src_user_role", "src_user_role"),
        ("`auth0_index` eventtype=auth0_signin", "auth0_signin"),
    ],
)
def test_the_analyzer_rejects_what_splunk_would_not_find(spl_with_log, search, complaint):
    with pytest.raises(SplError, match=re.escape(complaint)):
        spl_with_log.analyze(search)


def test_the_analyzer_follows_fields_through_the_pipes(spl_with_log):
    state = spl_with_log.analyze(
        "`auth0_index` sourcetype=auth0_activity | iplocation src | eval place=City "
        '| stats count(eval(signature=="Login")) as logins, dc(user) as users by place | rename place as where'
    )
    assert state.outputs == {"logins", "users", "where"}
