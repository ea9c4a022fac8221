"""`make bench`: the add-on's cost and pace, printed beside issue 8's targets.

Four parts, each a compact table (select with --parts, e.g. BENCH_ARGS="--parts a,d"):

(a) CPU beside a floor: per round, over the same local tenant, the add-on's
    backfill of N logs (update_metadata = false) and tests/bench_floor.py's
    (a bare standard-library client doing the same reads and writing the
    same XML), for collect = activity and collect = all; the add-on's CPU
    as a multiple of the floor's, per round and the median.
(b) rate-limited backfills on Auth0-style token buckets (tests/fakes/
    ratelimit.py), flags written: separate log and user buckets, then one
    shared bucket; the wall time as a multiple of the busiest bucket's
    floor (its requests / its rate), or of all requests / the rate, and
    each bucket's 429s beside its refills (wall time x rate / burst).
(c) scale: CPU and peak RSS of the backfill at N and 10 N logs (the N
    figure is (a)'s when (a) ran).
(d) an idle run (no new logs, token cached), add-on beside floor.

Everything runs on 127.0.0.1 (the fake tenant and splunkd of tests/fakes,
HTTPS with a throwaway CA). Nothing is asserted: the figures are for
people; this machine is noisy, so compare ratios within one round.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Dict, List, Optional

from tests.bench_run import AddonInput, FloorClient, Measured, load, median, ratio, stamp
from tests.fakes.certs import make_test_ca
from tests.fakes.ratelimit import Bucket, separate_buckets, shared_bucket
from tests.fakes.seed import add_test_clients, generate_activity
from tests.fakes.splunkd import FakeSplunkd
from tests.fakes.tenant import FakeTenant

TARGETS = {
    "a": "add-on CPU <= 1.5x the floor's, collect = activity and all",
    "b": "wall <= 1.2x the busiest bucket's floor (separate) / total requests / rate (shared); <= one 429 per refill",
    "c": "10x the logs: CPU <= 11x; peak RSS within 5 MiB of the smaller run's and under 64 MiB",
    "d": "idle add-on CPU <= 4x the floor's idle run",
}


@dataclass
class Bench:
    args: argparse.Namespace
    root: str
    ca: object
    splunkd: FakeSplunkd
    python: str
    inputs: int = 0

    def tenant(self, logs: int, users: int, buckets: tuple = ()) -> FakeTenant:
        """A local tenant with generated activity (dates sometimes out of log_id order)."""
        tenant = FakeTenant(ca=self.ca, log_token_exchanges=False, rate_limits=buckets).start()
        add_test_clients(tenant)
        generate_activity(tenant, logs, users=users)
        return tenant

    def addon(self, tenant: FakeTenant, **params: str) -> AddonInput:
        self.inputs += 1
        name = f"bench{self.inputs}"
        return AddonInput(self.python, self.splunkd, tenant, self.root, name, self.ca.ca_bundle_path, **params)

    def floor(self, tenant: FakeTenant, collect: str = "activity") -> FloorClient:
        self.inputs += 1
        return FloorClient(self.python, tenant, self.root, f"floor{self.inputs}", self.ca.ca_bundle_path, collect)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="a,b,c,d", help="which parts to run, e.g. a,d (default all)")
    parser.add_argument("--rounds", type=int, default=3, help="(a) rounds per collect mode (default 3)")
    parser.add_argument("--logs", type=int, default=100_000, help="(a), (c) logs (default 100000)")
    parser.add_argument("--users", type=int, default=20_000, help="(a), (c) users (default 20000)")
    parser.add_argument("--scale", type=int, default=10, help="(c) the larger run has this many times --logs")
    parser.add_argument("--rl-logs", type=int, default=20_000, help="(b) logs (default 20000)")
    parser.add_argument("--rl-users", type=int, default=700, help="(b) users, each flagged once (default 700)")
    parser.add_argument("--idle-rounds", type=int, default=5, help="(d) idle runs of each (default 5)")
    parser.add_argument("--addon-python", default=sys.executable, help="interpreter for the add-on and the floor")
    args = parser.parse_args(argv)
    parts = {part.strip() for part in args.parts.split(",") if part.strip()}
    python = os.path.abspath(args.addon_python)

    print(f"TA-auth0 bench {stamp()}  add-on and floor on {python}")
    with tempfile.TemporaryDirectory(prefix="ta-auth0-bench-") as root:
        ca = make_test_ca(os.path.join(root, "ca"))
        with FakeSplunkd(ca.server_ssl_context()) as splunkd:
            bench = Bench(args, root, ca, splunkd, python)
            small: Optional[Measured] = None
            if "a" in parts:
                small = part_a(bench)
            if "b" in parts:
                part_b(bench)
            if "c" in parts:
                part_c(bench, small)
            if "d" in parts:
                part_d(bench)
    return 0


# ---- (a) ---------------------------------------------------------------------


def part_a(bench: Bench) -> Measured:
    args = bench.args
    print(f"\n(a) CPU beside the floor client: {args.logs} logs, update_metadata = false  [{load()}]")
    print(f"    target: {TARGETS['a']}")
    tenant = bench.tenant(args.logs, args.users)
    activity_runs: List[Measured] = []
    try:
        header = (
            "  collect   round  addon_cpu_s  floor_cpu_s  ratio  addon_events  floor_events  addon_wall_s  floor_wall_s"
        )
        print(header)
        for collect in ("activity", "all"):
            ratios = []
            for number in range(1, args.rounds + 1):
                addon_input, floor = (
                    bench.addon(tenant, update_metadata="false", collect=collect),
                    bench.floor(tenant, collect),
                )
                # Alternate who goes first, so a drift in the machine's load
                # does not always favour the same side.
                if number % 2:
                    addon_run, floor_run = addon_input.backfill(), floor.run()
                else:
                    floor_run, addon_run = floor.run(), addon_input.backfill()
                if collect == "activity":
                    activity_runs.append(addon_run)
                ratios.append(addon_run.cpu / floor_run.cpu)
                print(
                    f"  {collect:<8}  {number:>5}  {addon_run.cpu:>11.2f}  {floor_run.cpu:>11.2f}  "
                    f"{ratio(addon_run.cpu, floor_run.cpu):>5}  {addon_run.total('events_written'):>12}  "
                    f"{floor_run.total('events_written'):>12}  {addon_run.wall:>12.1f}  {floor_run.wall:>12.1f}"
                )
                _complain(addon_run, "add-on")
                _complain(floor_run, "floor")
            print(f"  {collect:<8}  median{'':>28}{median(ratios):>5.2f}x")
    finally:
        tenant.stop()
    return Measured(
        cpu=median([run.cpu for run in activity_runs]),
        wall=median([run.wall for run in activity_runs]),
        peak_rss_mib=max(run.peak_rss_mib for run in activity_runs),
    )


# ---- (b) ---------------------------------------------------------------------


def part_b(bench: Bench) -> None:
    args = bench.args
    print(f"\n(b) rate-limited backfills: {args.rl_logs} logs, {args.rl_users} users, flags written  [{load()}]")
    print(f"    target: {TARGETS['b']}")
    setups = [
        ("separate", separate_buckets(logs=(10, 5.0), users=(10, 10.0))),
        ("shared", shared_bucket(burst=10, per_second=10.0)),
    ]
    print("  buckets   bucket         burst  rate/s  requests  429s  refills  429/refill  floor_s")
    for label, buckets in setups:
        tenant = bench.tenant(args.rl_logs, args.rl_users, buckets)
        try:
            run = bench.addon(tenant).backfill()
            stats = tenant.rate_limit_stats
        finally:
            tenant.stop()
        floors: Dict[str, float] = {}
        for name, stat in stats.items():
            bucket: Bucket = stat.bucket
            floors[name] = stat.taken / bucket.per_second
            refills = run.wall * bucket.per_second / bucket.burst
            print(
                f"  {label:<8}  {name:<13}  {bucket.burst:>5}  {bucket.per_second:>6.1f}  {stat.taken:>8}  "
                f"{stat.refused:>4}  {refills:>7.0f}  {stat.refused / refills:>10.3f}  {floors[name]:>7.1f}"
            )
        floor = max(floors.values())
        print(
            f"  {label:<8}  backfill: wall {run.wall:.1f}s = {ratio(run.wall, floor)} the floor of {floor:.1f}s "
            f"({run.runs} run(s), events {run.total('events_written')}, flags done {run.total('flag_writes_done')}, "
            f"pending {run.last.get('flag_writes_pending', '?')}, 429s seen by the add-on {run.total('rate_limited')})"
        )
        _complain(run, "add-on")


# ---- (c) ---------------------------------------------------------------------


def part_c(bench: Bench, small: Optional[Measured]) -> None:
    args = bench.args
    big_logs = args.logs * args.scale
    print(f"\n(c) scale: {args.logs} and {big_logs} logs, update_metadata = false  [{load()}]")
    print(f"    target: {TARGETS['c']}")
    rows = []
    if small is None:
        tenant = bench.tenant(args.logs, args.users)
        try:
            small = bench.addon(tenant, update_metadata="false").backfill()
        finally:
            tenant.stop()
        rows.append((args.logs, small, "1 run"))
    else:
        rows.append((args.logs, small, "(a)'s activity runs: median CPU and wall, max RSS"))
    tenant = bench.tenant(big_logs, args.users * args.scale)
    try:
        big = bench.addon(tenant, update_metadata="false").backfill()
    finally:
        tenant.stop()
    rows.append((big_logs, big, f"{big.runs} run(s), events {big.total('events_written')}"))
    print("  logs       cpu_s  peak_rss_MiB  wall_s  note")
    for logs, run, note in rows:
        print(f"  {logs:>8}  {run.cpu:>6.1f}  {run.peak_rss_mib:>12.1f}  {run.wall:>6.1f}  {note}")
    print(
        f"  CPU {ratio(big.cpu, small.cpu)} for {args.scale}x the logs; peak RSS "
        f"{big.peak_rss_mib - small.peak_rss_mib:+.1f} MiB, max {max(big.peak_rss_mib, small.peak_rss_mib):.1f} MiB"
    )
    _complain(big, "add-on")


# ---- (d) ---------------------------------------------------------------------


def part_d(bench: Bench) -> None:
    args = bench.args
    print(f"\n(d) idle runs: no new logs, token cached (a tenant of 2000 logs)  [{load()}]")
    print(f"    target: {TARGETS['d']}")
    tenant = bench.tenant(2000, 500)
    try:
        addon_input, floor = bench.addon(tenant, update_metadata="false"), bench.floor(tenant)
        addon_input.backfill()
        floor.run()
        print("  round  addon_cpu_s  floor_cpu_s  ratio  addon_rss_MiB  floor_rss_MiB  addon_api_calls")
        addon_cpu, floor_cpu = [], []
        for number in range(1, args.idle_rounds + 1):
            addon_run, floor_run = addon_input.run(), floor.run()
            addon_cpu.append(addon_run.cpu)
            floor_cpu.append(floor_run.cpu)
            print(
                f"  {number:>5}  {addon_run.cpu:>11.3f}  {floor_run.cpu:>11.3f}  "
                f"{ratio(addon_run.cpu, floor_run.cpu):>5}  {addon_run.peak_rss_mib:>13.1f}  "
                f"{floor_run.peak_rss_mib:>13.1f}  {addon_run.last.get('api_calls', '?'):>15}"
            )
            _complain(addon_run, "add-on")
            _complain(floor_run, "floor")
        idle, floor_idle = median(addon_cpu), median(floor_cpu)
        print(f"  median {idle:>11.3f}  {floor_idle:>11.3f}  {ratio(idle, floor_idle):>5}")
    finally:
        tenant.stop()


def _complain(run: Measured, who: str) -> None:
    """A figure of a failed run is no figure: say so under the row."""
    if run.returncode or (run.last and run.last.get("status", "ok") not in ("ok",)):
        print(f"    ! {who} run: exit {run.returncode}, summary {run.last}\n{run.stderr_tail}")


if __name__ == "__main__":
    sys.exit(main())
