"""`make bench`: throughput, memory and API cost of the input, as figures.

Loads a local tenant with N synthetic logs (tests.fakes.seed.generate_activity),
then runs bin/auth0_activity.py the way splunkd does, again and again, until it
has caught up, and prints per run: logs read, events, wall time, logs/s, peak
RSS of the add-on process, API calls, TLS connections, state file size. Then
one more run after 1 000 new logs, to show the cost per page does not grow
with what the state holds. Only 127.0.0.1 is contacted. Nothing is asserted:
tests assert behaviour, this prints numbers.
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

# Runs the add-on as a grandchild so RUSAGE_CHILDREN measures it alone.
_MEASURE = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], stdin=sys.stdin, stdout=subprocess.DEVNULL, stderr=sys.stderr)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(done.returncode)\n"
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=int, default=100_000, help="synthetic logs in the tenant (default 100000)")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--addon-python", default=sys.executable)
    args = parser.parse_args(argv)
    python = os.path.abspath(args.addon_python)

    with tempfile.TemporaryDirectory(prefix="ta-auth0-bench-") as root:
        ca = make_test_ca(os.path.join(root, "ca"))
        with FakeTenant(ca=ca, log_token_exchanges=False) as tenant, FakeSplunkd(ca.server_ssl_context()) as splunkd:
            add_test_clients(tenant)
            started = time.perf_counter()
            generate_activity(tenant, args.logs, users=args.users)
            print(f"tenant: {args.logs} logs, {args.users} users, loaded in {time.perf_counter() - started:.1f}s")
            print(f"add-on: {python}")
            params = {
                "domain": tenant.domain,
                "client_id": "test-client-id",
                "client_secret": "test-client-secret-DO-NOT-LEAK-42",
                "index": "main",
            }
            splunkd.add_input("bench", **params)
            checkpoint_dir = os.path.join(root, "checkpoint")
            os.makedirs(checkpoint_dir)
            env = addon.addon_env(ca.ca_bundle_path, os.path.join(root, "splunk"))
            header = "run  logs_read  events  seconds  logs/s  peak_rss_MB  api_calls  tls_conns  state_MB"
            print(header)
            run, summaries = 0, []
            while True:
                run += 1
                summaries.append(measure(run, python, tenant, splunkd, checkpoint_dir, env))
                if summaries[-1].get("caught_up") == "true" or summaries[-1].get("status") != "ok":
                    break
            generate_activity(tenant, 1000, users=args.users, seed=1, add_users=False)
            summaries.append(measure(run + 1, python, tenant, splunkd, checkpoint_dir, env))
            tokens = sum(int(summary.get("tokens_requested", 0)) for summary in summaries)
            print(f"tokens requested in all: {tokens}")
    return 0


def measure(run, python, tenant, splunkd, checkpoint_dir, env) -> dict:
    tenant.reset_counters()
    document = addon.input_xml(
        "auth0_activity://bench", splunkd.input_params("bench"), checkpoint_dir, splunkd.server_uri, splunkd.session_key
    )
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, python, addon.SCRIPT],
        input=document.encode(),
        capture_output=True,
        env=env,
        check=False,
    )
    seconds = time.perf_counter() - started
    stderr = done.stderr.decode()
    peak_kb = int(stderr.strip().splitlines()[-1])
    summary_line = next((line for line in stderr.splitlines() if "run summary:" in line), "")
    summary = dict(pair.split("=", 1) for pair in summary_line.split("run summary:", 1)[-1].split())
    state_bytes = sum(os.path.getsize(os.path.join(checkpoint_dir, name)) for name in os.listdir(checkpoint_dir))
    logs = int(summary.get("logs_read", 0))
    print(
        f"{run:>3}  {logs:>9}  {summary.get('events_written', '?'):>6}  {seconds:>7.1f}  {logs / seconds:>6.0f}  "
        f"{peak_kb / 1024:>11.1f}  {sum(tenant.calls.values()):>9}  {tenant.connections:>9}  "
        f"{state_bytes / 1e6:>8.2f}"
    )
    if summary.get("status") != "ok":
        print(stderr[-2000:])
    return summary


if __name__ == "__main__":
    sys.exit(main())
