"""`make demo`: the add-on's main job on a local, seeded Auth0 tenant.

Starts the fake tenant (HTTPS, throwaway CA) and a fake splunkd, runs
bin/auth0_activity.py once exactly as splunkd would (input XML on stdin),
and shows what Splunk would index and what happened to the users' flags.
Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from datetime import datetime, timezone

from tests import addon
from tests.fakes.certs import make_test_ca
from tests.fakes.seed import MAIN_CLIENT_ID, MAIN_CLIENT_SECRET, load_seed
from tests.fakes.splunkd import FakeSplunkd
from tests.fakes.tenant import FakeTenant


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addon-python", default=sys.executable, help="interpreter that runs the add-on")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (state, ta_auth0.log)")
    args = parser.parse_args(argv)
    addon.ADDON_PYTHON = os.path.abspath(args.addon_python)

    root = tempfile.mkdtemp(prefix="ta-auth0-demo-")
    try:
        ca = make_test_ca(os.path.join(root, "ca"))
        with FakeTenant(ca=ca) as tenant, FakeSplunkd(ca.server_ssl_context()) as splunkd:
            load_seed(tenant)
            params = {
                "domain": tenant.domain,
                "client_id": MAIN_CLIENT_ID,
                "client_secret": MAIN_CLIENT_SECRET,
                "index": "main",
                "interval": "300",
            }
            splunkd.add_input("demo", **params)
            before = {user["user_id"]: user.get("app_metadata") for user in tenant.users}
            checkpoint_dir = os.path.join(root, "checkpoint")
            os.makedirs(checkpoint_dir)
            env = addon.addon_env(ca.ca_bundle_path, os.path.join(root, "splunk"))

            print(f"Local Auth0 tenant: https://{tenant.domain} ({len(tenant.logs)} logs, {len(before)} users)")
            print(f"Running: {args.addon_python} bin/auth0_activity.py < input XML (as splunkd does)\n")
            result = run_once(splunkd, checkpoint_dir, env)
            show_events(result.events)
            show_flags(tenant, before)
            print("\nThe input's log (stderr -> splunkd.log; also $SPLUNK_HOME/var/log/splunk/ta_auth0.log):")
            print("  " + result.stderr.strip().replace("\n", "\n  "))
            print(f"\nThe stanza's client_secret is now {splunkd.input_params('demo')['client_secret']!r};")
            print(f"the secret is in storage/passwords under {sorted(splunkd.passwords)}.")
            second = run_once(splunkd, checkpoint_dir, env)
            summary = " ".join(f"{key}={value}" for key, value in second.summary().items())
            print(f"\nA second run ({tenant.tokens_issued} token requested in all, none new): {summary}")
            return result.returncode or second.returncode
    finally:
        if args.keep:
            print(f"\nKept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def run_once(splunkd, checkpoint_dir: str, env: dict):
    """One run, sent the stanza as splunkd has it now (masked after the first)."""
    return addon.run_input(
        "auth0_activity://demo",
        splunkd.input_params("demo"),
        checkpoint_dir,
        env,
        server_uri=splunkd.server_uri,
        session_key=splunkd.session_key,
    )


def show_events(events) -> None:
    print(f"Events Splunk would index ({len(events)}; source=auth0 sourcetype=auth0_activity):")
    print(f"  {'_time (UTC)':<23} {'message':<7} {'application':<28} {'userName':<32} {'clientIP':<16} type")
    for event in events:
        data = event.data
        print(
            f"  {_utc(event.time):<23} {data['message']:<7} {_cut(data['application'], 28):<28} "
            f"{_cut(data['userName'], 32):<32} {str(data['clientIP']):<16} {data['type']}"
        )
    if events:
        print("\nOne event's data, as indexed:")
        print("  " + json.dumps(events[0].data, ensure_ascii=False))


def show_flags(tenant, before) -> None:
    print("\nUsers' app_metadata in Auth0, before -> after:")
    for user_id, metadata in before.items():
        after = (tenant.user(user_id) or {}).get("app_metadata")
        mark = "  changed" if after != metadata else ""
        print(f"  {_cut(user_id, 40):<40} {json.dumps(metadata)} -> {json.dumps(after)}{mark}")


def _utc(epoch) -> str:
    if not epoch:
        return "-"
    moment = datetime.fromtimestamp(float(epoch), timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + epoch.split(".")[-1]


def _cut(value, width: int) -> str:
    text = repr(value)[1:-1] if isinstance(value, str) else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


if __name__ == "__main__":
    sys.exit(main())
