"""SPEC §7 delivery: the checkpoint never moves past an event splunkd did not get.

Checked deterministically: the add-on's stdout is a pipe shrunk to one
memory page (4 KiB), so a page of events (tens of KiB) is only written
once the reader has taken nearly all of it. The reader takes N events and
closes its end in the middle of a page: that page's write fails, and the
next run must start with it.
"""

from __future__ import annotations

import fcntl
import os
import subprocess

import pytest

from tests.addon import ADDON_PYTHON, SCRIPT, parse_stream
from tests.fakes.seed import generate_activity

F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux; the name exists from Python 3.10
PIPE_SIZE = 4096
PAGE = 100


def run_until_closed(bed, events_wanted: int) -> list:
    """Run the input with a 4 KiB stdout pipe; read `events_wanted` events,
    then close the pipe. Returns the log_ids of those events, and stderr."""
    document = bed.input_document("prod")
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, F_SETPIPE_SZ, PIPE_SIZE)
    process = subprocess.Popen(
        [ADDON_PYTHON, SCRIPT], stdin=subprocess.PIPE, stdout=write_end, stderr=subprocess.PIPE, env=bed.env
    )
    os.close(write_end)
    process.stdin.write(document.encode())
    process.stdin.close()
    received = b""
    with os.fdopen(read_end, "rb", buffering=0) as reader:
        while received.count(b"</event>") < events_wanted:
            chunk = reader.read(512)
            assert chunk, "the add-on ended before writing the events wanted"
            received += chunk
    stderr = process.stderr.read().decode()
    process.stderr.close()
    assert process.wait(timeout=60) != 0, stderr
    end = -1
    for _ in range(events_wanted):
        end = received.find(b"</event>", end + 1)
    whole = received[: end + len(b"</event>")].decode()
    return [e.data["log_id"] for e in parse_stream(whole + "</stream>")], stderr


@pytest.mark.subprocess  # its stdout pipe closed mid-page
@pytest.mark.parametrize("collect", ["activity", "all"])
def test_a_page_splunkd_did_not_take_is_sent_again_and_nothing_is_lost(empty_bed, collect):
    bed = empty_bed
    bed.tenant.log_token_exchanges = False  # the tenant's logs stay as generated
    generate_activity(bed.tenant, 800, users=80)
    logs = bed.tenant.logs
    # A new input reads its first log alone (search mode), then pages of 100.
    pages = [logs[:1]] + [logs[start : start + PAGE] for start in range(1, len(logs), PAGE)]
    wanted = [[log["log_id"] for log in page if collect == "all" or log["type"] in ("s", "ss")] for page in pages]
    expected = [log_id for page in wanted for log_id in page]
    delivered = len(wanted[0]) + len(wanted[1])  # pages 1 and 2 whole
    cut = delivered + len(wanted[2]) // 2  # then half of page 3
    assert (len(wanted[2]) - len(wanted[2]) // 2) * 500 > PIPE_SIZE  # what is left of page 3 cannot fit the pipe

    bed.configure("prod", collect=collect, update_metadata="false")
    before, stderr = run_until_closed(bed, cut)
    assert before == expected[:cut]
    assert "splunkd stopped reading the event stream" in stderr
    assert "status=error" in stderr

    after = bed.run()
    assert after.returncode == 0, after.stderr
    assert after.log_ids == expected[delivered:]  # page 3 again, whole, then the rest: nothing lost
    assert len(set(before) & set(after.log_ids)) <= PAGE
