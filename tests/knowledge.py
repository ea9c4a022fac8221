"""The add-on's search-time knowledge applied to sample events, as Splunk
would: shared by the knowledge tests (tests/test_knowledge*.py) and the CIM
judge (tests/cim/), which runs in a venv of its own.

The samples are data files under tests/fixtures/knowledge/, hand-built from
Auth0's published log schemas and docs, never from this add-on's code:
- auth0_logs.json: Auth0 logs as the Management API returns them, at least
  one of every type the log type table knows (and one it does not);
- auth0_activity_events.json: the auth0_activity events SPEC §4 says the
  collector writes for three of those logs (written out by hand);
- original_rule_events.json: events of the original Auth0 rule;
- auth0_log_type_codes.json: Auth0's codes by the source that lists them.

Stream events ({"log_id", "data"}) are what both Auth0's log stream and the
input with collect = all send (SPEC §4.1). Only the standard library and
the .conf parser library the dev venvs already have.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple

from addonfactory_splunk_conf_parser_lib import TABConfigParser

from tests.spl import kv_json, matches, search_time

REPO = Path(__file__).resolve().parent.parent
DEFAULT = REPO / "default"
LOOKUPS = REPO / "lookups"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "knowledge"
# What a HEC token of Auth0's log stream stamps (Auth0's setup suggests the
# sourcetype auth0; host and source are the token's, not the tenant's).
STREAM_META = {"source": "http:auth0", "sourcetype": "auth0", "host": "hec-01.acme.example", "index": "auth0"}


def conf(name: str, app: Path = REPO) -> Dict[str, Dict[str, str]]:
    """A default/*.conf file as Splunk's own .conf parser library reads it."""
    parser = TABConfigParser()
    with open(app / "default" / name, encoding="utf-8") as handle:
        parser.read_file(handle)
    # The library keeps the `\\` of a continued line; Splunk drops it.
    return {
        stanza: {key: value.replace("\\\n", "\n") for key, value in settings.items()}
        for stanza, settings in parser.item_dict().items()
    }


def lookup_tables(app: Path = REPO) -> Dict[str, List[Dict[str, str]]]:
    """transforms.conf's CSV lookups: {definition: rows}."""
    tables = {}
    for name, stanza in conf("transforms.conf", app).items():
        with open(app / "lookups" / stanza["filename"], encoding="utf-8", newline="") as handle:
            tables[name] = list(csv.DictReader(handle))
    return tables


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def stream_event(log: Mapping[str, Any], nulls: str = "null", meta: Mapping[str, str] = STREAM_META) -> Dict[str, Any]:
    """A log as a `sourcetype=auth0` event sees it before props.conf: its JSON
    text as _raw, the fields KV_MODE = json extracts, the HEC metadata."""
    raw = {"log_id": log.get("log_id"), "data": log}
    event = kv_json(raw, nulls=nulls)
    event.update(meta)
    event["_raw"] = json.dumps(raw, ensure_ascii=False)
    return event


def activity_event(data: Mapping[str, Any], nulls: str = "null") -> Dict[str, Any]:
    """An auth0_activity event (the collector's JSON) before props.conf."""
    event = kv_json(dict(data), nulls=nulls)
    event.update({"source": "auth0", "sourcetype": "auth0_activity", "host": data.get("tenant") or "splunk-hf-01"})
    event["index"] = "auth0"
    event["_raw"] = json.dumps(dict(data), ensure_ascii=False)
    return event


class Knowledge:
    """props, eventtypes, tags and lookups of an app folder, applied to events."""

    def __init__(self, app: Path = REPO) -> None:
        self.props = conf("props.conf", app)
        self.eventtypes = {name: stanza["search"] for name, stanza in conf("eventtypes.conf", app).items()}
        self.tags = {
            stanza.split("=", 1)[1]: sorted(tag for tag, state in tags.items() if state == "enabled")
            for stanza, tags in conf("tags.conf", app).items()
        }
        self.tables = lookup_tables(app)

    def fields(self, event: Mapping[str, Any]) -> Dict[str, Any]:
        """The event's fields at search time, with `eventtype` and `tag` as
        Splunk adds them after the lookups."""
        fields = search_time(self.props[event["sourcetype"]], event, self.tables)
        meta = {key: event[key] for key in ("source", "sourcetype", "host", "index")}
        probe = dict(fields, _meta=meta)
        types = sorted(name for name, search in self.eventtypes.items() if matches(search, probe))
        fields["eventtype"] = types
        fields["tag"] = sorted({tag for name in types for tag in self.tags.get(name, [])})
        # tests.spl.matches reads Splunk's own fields from _meta.
        fields["_meta"] = dict(meta, eventtype=types, tag=fields["tag"])
        return fields


def sample_logs() -> List[Dict[str, Any]]:
    return load("auth0_logs.json")


def stream_samples(knowledge: Knowledge, nulls: str = "null") -> List[Tuple[Dict[str, Any], Dict[str, Any]]]:
    """(log, fields) for every sample log as a stream event."""
    return [(log, knowledge.fields(stream_event(log, nulls))) for log in sample_logs()]


def activity_samples(knowledge: Knowledge, nulls: str = "null") -> List[Tuple[Dict[str, Any], Dict[str, Any]]]:
    """(event data, fields) for the hand-written auth0_activity events."""
    return [(data, knowledge.fields(activity_event(data, nulls))) for data in load("auth0_activity_events.json")]
