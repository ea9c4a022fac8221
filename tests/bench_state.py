"""`make bench-state`: what the state backend costs, local file beside KV store.

A local tenant with N synthetic logs (tests.fakes.seed.generate_activity)
and a fake splunkd, once per backend (the same logs each time); an input
with `state_store = local`, then one with `state_store = kvstore`, run the way splunkd
runs them until each has caught up. Printed per backend: runs, wall time,
CPU of the add-on process (user + system), peak RSS, splunkd requests
(KV store and the rest), and the same per 100 000 logs. The fake splunkd
answers in this process, so its CPU is not in the add-on's figure; a real
splunkd's KV store is slower than this fake (it writes to MongoDB), so the
wall time here is a floor. Only 127.0.0.1 is contacted; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from tests import addon
from tests.fakes.certs import make_test_ca
from tests.fakes.seed import add_test_clients, generate_activity
from tests.fakes.splunkd import FakeSplunkd
from tests.fakes.tenant import FakeTenant

# The add-on as a grandchild, so RUSAGE_CHILDREN measures it alone.
_MEASURE = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], stdin=sys.stdin, stdout=subprocess.DEVNULL, stderr=sys.stderr)\n"
    "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(r.ru_utime + r.ru_stime, r.ru_maxrss, file=sys.stderr)\n"
    "sys.exit(done.returncode)\n"
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=int, default=100_000, help="synthetic logs in the tenant (default 100000)")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--update-metadata", default="false", help="true adds the flag writes (and their state)")
    parser.add_argument("--addon-python", default=sys.executable)
    args = parser.parse_args(argv)
    python = os.path.abspath(args.addon_python)

    print(f"tenant: {args.logs} logs, {args.users} users; update_metadata={args.update_metadata}")
    print(f"add-on: {python}")
    print("backend  runs  logs_read  events  wall_s  cpu_s  peak_rss_MB  kv_requests  other_splunkd  cpu_s/100k")
    with tempfile.TemporaryDirectory(prefix="ta-auth0-bench-state-") as root:
        ca = make_test_ca(os.path.join(root, "ca"))
        for backend in ("local", "kvstore"):
            # A tenant of its own for each (the same seed: the same logs), so
            # one input's flag writes (and their `sapi` logs) never reach the other.
            with FakeTenant(ca=ca, log_token_exchanges=False) as tenant:
                with FakeSplunkd(ca.server_ssl_context()) as splunkd:
                    add_test_clients(tenant)
                    splunkd.load_collections_conf(addon.COLLECTIONS_CONF)
                    generate_activity(tenant, args.logs, users=args.users)
                    report(backend, run_until_caught_up(backend, python, tenant, splunkd, root, args, ca))
    return 0


def run_until_caught_up(backend, python, tenant, splunkd, root, args, ca) -> dict:
    name = f"bench_{backend}"
    splunkd.add_input(
        name,
        domain=tenant.domain,
        client_id="test-client-id",
        client_secret="test-client-secret-DO-NOT-LEAK-42",
        index="main",
        state_store=backend,
        update_metadata=args.update_metadata,
    )
    checkpoint_dir = os.path.join(root, name)
    os.makedirs(checkpoint_dir)
    env = addon.addon_env(ca.ca_bundle_path, os.path.join(root, "splunk-" + backend))
    totals = {"runs": 0, "logs": 0, "events": 0, "wall": 0.0, "cpu": 0.0, "rss": 0, "kv": 0, "other": 0}
    while True:
        before = len(splunkd.requests)
        document = addon.input_xml(
            f"auth0_activity://{name}",
            splunkd.input_params(name),
            checkpoint_dir,
            splunkd.server_uri,
            splunkd.session_key,
        )
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", _MEASURE, python, addon.SCRIPT],
            input=document.encode(),
            capture_output=True,
            env=env,
            check=False,
        )
        totals["wall"] += time.perf_counter() - started
        stderr = done.stderr.decode()
        cpu, rss_kb = stderr.strip().splitlines()[-1].split()
        line = next((x for x in stderr.splitlines() if "run summary:" in x), "")
        summary = dict(pair.split("=", 1) for pair in line.split("run summary:", 1)[-1].split())
        requests = splunkd.requests[before:]
        kv = sum(1 for _, path, _ in requests if "/storage/collections/" in path)
        totals.update(
            runs=totals["runs"] + 1,
            logs=totals["logs"] + int(summary.get("logs_read", 0)),
            events=totals["events"] + int(summary.get("events_written", 0)),
            cpu=totals["cpu"] + float(cpu),
            rss=max(totals["rss"], int(rss_kb)),
            kv=totals["kv"] + kv,
            other=totals["other"] + len(requests) - kv,
        )
        if summary.get("status") != "ok":
            print(stderr[-2000:])
            return totals
        if summary.get("caught_up") == "true":
            return totals


def report(backend: str, t: dict) -> None:
    per = 100_000 / max(1, t["logs"])
    print(
        f"{backend:<7}  {t['runs']:>4}  {t['logs']:>9}  {t['events']:>6}  {t['wall']:>6.1f}  {t['cpu']:>5.1f}  "
        f"{t['rss'] / 1024:>11.1f}  {t['kv']:>11}  {t['other']:>13}  {t['cpu'] * per:>10.1f}"
    )


if __name__ == "__main__":
    sys.exit(main())
