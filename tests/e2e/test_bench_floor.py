"""The bench's floor client writes the events the add-on writes.

`make bench` prints the add-on's CPU as a multiple of tests/bench_floor.py's;
that figure means something only if the floor does the same job. Held here:
over one tenant, its stream parses (with the strict parser the add-on's tests
use) to the same events as the add-on's, and with collect = all it adds the
other logs in the log stream's shape, exactly as the API returned them.
"""

from __future__ import annotations

import json
import os
import subprocess

from tests.addon import ADDON_PYTHON, parse_stream
from tests.bench_run import FLOOR_SCRIPT
from tests.fakes.seed import MAIN_CLIENT_ID, MAIN_CLIENT_SECRET, generate_activity

ODD = '<&"ë名😀]]>'


def run_floor(bed, collect):
    config = {
        "domain": bed.tenant.domain,
        "client_id": MAIN_CLIENT_ID,
        "client_secret": MAIN_CLIENT_SECRET,
        "state_file": os.path.join(bed.root, f"floor-{collect}.json"),
        "collect": collect,
        "index": "auth0",
        "stanza": "auth0_activity://prod",
    }
    done = subprocess.run(
        [ADDON_PYTHON, FLOOR_SCRIPT], input=json.dumps(config).encode(), capture_output=True, env=bed.env, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    return parse_stream(done.stdout.decode("utf-8"))


def shape(event):
    return (event.data, event.time, event.host, event.source, event.sourcetype, event.index, event.stanza)


def test_the_floor_client_writes_the_add_ons_events(empty_bed):
    tenant = empty_bed.tenant
    generate_activity(tenant, 450, users=40)
    odd = {
        "type": "s",
        "user_id": "auth0|odd",
        "user_name": ODD,
        "client_name": ODD,
        "details": {"prompts": [{"name": "login", "stats": {"loginsCount": 4}}]},
    }
    tenant.add_log(odd)
    addon = empty_bed.run(update_metadata="false")
    assert addon.returncode == 0, addon.stderr
    floor = run_floor(empty_bed, "activity")
    assert len(floor) == len(addon.events) > 400
    assert [shape(e) for e in floor] == [shape(e) for e in addon.events]


def test_the_floor_client_with_collect_all_adds_every_other_log_as_the_api_returned_it(empty_bed):
    tenant = empty_bed.tenant
    generate_activity(tenant, 300, users=30)
    events = run_floor(empty_bed, "all")
    logs = tenant.logs
    assert len(events) == len(logs)
    for event, log in zip(events, logs):
        if log["type"] in ("s", "ss"):
            assert event.sourcetype == "auth0_activity" and event.data["log_id"] == log["log_id"]
        else:
            assert event.sourcetype == "auth0"
            assert event.data == {"log_id": log["log_id"], "data": log}
