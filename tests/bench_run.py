"""How `make bench` runs the add-on and the floor client, and what it measures.

Each process runs under a small wrapper so that RUSAGE_CHILDREN measures it
alone: CPU (user + sys), wall time and peak RSS. The add-on runs exactly as
splunkd runs it (bin/auth0_activity.py, the input's XML on stdin, a fake
splunkd for its secret); the floor client (tests/bench_floor.py) gets its
settings as JSON on stdin. Both write their event stream to /dev/null: the
cost of building it is measured, not of storing it.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from tests import addon
from tests.fakes.seed import MAIN_CLIENT_ID, MAIN_CLIENT_SECRET

FLOOR_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_floor.py")

# Runs argv[1:] as a child and reports the child's own resource use as the
# last line of stderr (RUSAGE_CHILDREN of this wrapper = that one child).
_WRAPPER = (
    "import json, resource, subprocess, sys, time\n"
    "started = time.perf_counter()\n"
    "done = subprocess.run(sys.argv[1:], stdin=sys.stdin, stdout=subprocess.DEVNULL, stderr=sys.stderr)\n"
    "wall = time.perf_counter() - started\n"
    "use = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(json.dumps({'user': use.ru_utime, 'sys': use.ru_stime, 'rss_kb': use.ru_maxrss, 'wall': wall}),"
    " file=sys.stderr)\n"
    "sys.exit(done.returncode)\n"
)


@dataclass
class Measured:
    """One process, or the sum of the runs of one backfill."""

    cpu: float = 0.0  # user + sys seconds
    wall: float = 0.0
    peak_rss_mib: float = 0.0
    runs: int = 0
    returncode: int = 0
    summaries: List[Dict[str, str]] = field(default_factory=list)
    stderr_tail: str = ""

    def add(self, other: Measured) -> None:
        self.cpu += other.cpu
        self.wall += other.wall
        self.peak_rss_mib = max(self.peak_rss_mib, other.peak_rss_mib)
        self.runs += other.runs
        self.returncode = self.returncode or other.returncode
        self.summaries += other.summaries
        self.stderr_tail = other.stderr_tail

    def total(self, key: str) -> int:
        """A count summed over the runs' summary lines (e.g. events_written)."""
        return sum(int(s.get(key, "0")) for s in self.summaries if s.get(key, "0").isdigit())

    @property
    def last(self) -> Dict[str, str]:
        return self.summaries[-1] if self.summaries else {}


def measure(argv: List[str], stdin: bytes, env: Dict[str, str]) -> Measured:
    done = subprocess.run(
        [sys.executable, "-c", _WRAPPER, *argv], input=stdin, capture_output=True, env=env, check=False
    )
    lines = done.stderr.decode("utf-8", "replace").splitlines()
    use = json.loads(lines[-1])
    summaries = [_summary(line) for line in lines if "run summary:" in line or "floor summary:" in line]
    return Measured(
        cpu=use["user"] + use["sys"],
        wall=use["wall"],
        peak_rss_mib=use["rss_kb"] / 1024,
        runs=1,
        returncode=done.returncode,
        summaries=summaries,
        stderr_tail="\n".join(lines[-15:-1]),
    )


def _summary(line: str) -> Dict[str, str]:
    pairs = line.split("summary:", 1)[1].split()
    return dict(pair.split("=", 1) for pair in pairs if "=" in pair)


def installed_app(root: str) -> str:
    """A copy of the app folder under test, as `splunk install app` leaves
    it (bin/, lib/, default/), once per bench: the path of its script.

    Splunk's Python writes the app's byte code beside it on the first run
    and loads it from then on; the tests forbid that (PYTHONDONTWRITEBYTECODE,
    so nothing lands in the source tree), which would make every measured run
    compile the add-on and its libraries again. The copy lets the bench run
    the add-on as Splunk does without touching the tree."""
    app = os.path.join(root, "apps", "TA-auth0")
    if not os.path.isdir(app):
        for part in ("bin", "lib", "default"):
            shutil.copytree(os.path.join(addon.APP_DIR, part), os.path.join(app, part))
    return os.path.join(app, "bin", "auth0_activity.py")


class AddonInput:
    """One input of the add-on, run as splunkd runs it, keeping its state."""

    def __init__(self, python: str, splunkd, tenant, root: str, name: str, ca_bundle: str, **params: str) -> None:
        self.python = python
        self.splunkd = splunkd
        self.name = name
        self.checkpoint_dir = os.path.join(root, name, "checkpoint")
        os.makedirs(self.checkpoint_dir, exist_ok=True)
        self.script = installed_app(root)
        self.env = addon.addon_env(ca_bundle, os.path.join(root, name, "splunk"))
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)  # as Splunk runs it (see installed_app)
        stanza = {
            "domain": tenant.domain,
            "client_id": MAIN_CLIENT_ID,
            "client_secret": MAIN_CLIENT_SECRET,
            "index": "main",
            "host": "bench-host",
            "interval": "300",
        }
        stanza.update(params)
        splunkd.add_input(name, **stanza)

    def run(self) -> Measured:
        document = addon.input_xml(
            f"auth0_activity://{self.name}",
            self.splunkd.input_params(self.name),
            self.checkpoint_dir,
            self.splunkd.server_uri,
            self.splunkd.session_key,
        )
        return measure([self.python, self.script], document.encode(), self.env)

    def backfill(self, max_runs: int = 100) -> Measured:
        """Run until caught up with no flag write pending (a run ends at its
        time budget and the next goes on), or until a run fails."""
        total = Measured()
        for _ in range(max_runs):
            run = self.run()
            total.add(run)
            last = run.last
            if run.returncode or last.get("status") not in ("ok", "incomplete"):
                break
            if last.get("caught_up") == "true" and last.get("flag_writes_pending", "0") == "0":
                break
        return total


class FloorClient:
    """The floor client (tests/bench_floor.py) for one tenant, keeping its state."""

    def __init__(self, python: str, tenant, root: str, name: str, ca_bundle: str, collect: str = "activity") -> None:
        self.python = python
        os.makedirs(os.path.join(root, name), exist_ok=True)
        self.config = {
            "domain": tenant.domain,
            "client_id": MAIN_CLIENT_ID,
            "client_secret": MAIN_CLIENT_SECRET,
            "state_file": os.path.join(root, name, "floor-state.json"),
            "collect": collect,
            "index": "main",
            "stanza": f"auth0_activity://{name}",
        }
        self.env = addon.addon_env(ca_bundle, os.path.join(root, name, "splunk"))

    def run(self) -> Measured:
        return measure([self.python, FLOOR_SCRIPT], json.dumps(self.config).encode(), self.env)


def median(values: List[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(numerator: float, denominator: Optional[float]) -> str:
    if not denominator:
        return "-"
    return f"{numerator / denominator:.2f}x"


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}"


def stamp() -> str:
    return time.strftime("%H:%M:%S")
