"""Run Splunk AppInspect on the package and gate on its JSON reports.

    .venv-inspect/bin/python scripts/run_appinspect.py dist/TA-auth0-<version>.tgz [--out-dir build/appinspect]

Two runs, side by side (about 10 s each): `--mode precert` (what Splunkbase
vets) and `--mode precert --included-tags cloud` (what Splunk Cloud vets),
both offline (`--skip-trusted-libraries-update`: without it AppInspect tries
the network with no timeout). The JSON reports and the console logs land in
the out dir.

The gate, per run: summary `error` = 0, `failure` = 0 and `future_failure` = 0.
AppInspect 4.3.1 reports a future failure (a check that becomes a failure in a
coming AppInspect release, e.g. a missing `python.required` from 4.4.0) as
the result `future_failure`, in each message, in the check's result and in
the summary (each check counts once, at its worst message); the gate also
scans every message, so no summary arithmetic can hide one. `--ci` is not
used: it exits 103 on the informational warnings every app gets.

Every remaining warning and skip is printed on one line, so README can list
them; warnings from checks tagged `future` are marked, as those are the ones
a later AppInspect may tighten.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Dict, List, Tuple

RUNS: List[Tuple[str, List[str]]] = [
    ("precert", []),
    ("cloud", ["--included-tags", "cloud"]),
]
BLOCKING = ("error", "failure", "future_failure")
SHOWN = ("warning", "skipped")


def appinspect_command(package: str, report: str, extra: List[str]) -> List[str]:
    """The CLI next to this interpreter (the inspect venv), else on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "splunk-appinspect")
    cli = here if os.path.exists(here) else "splunk-appinspect"
    return [
        cli,
        "inspect",
        package,
        "--mode",
        "precert",
        *extra,
        "--skip-trusted-libraries-update",
        "--data-format",
        "json",
        "--output-file",
        report,
    ]


def read_report(path: str) -> Tuple[Dict[str, int], List[dict]]:
    """(summary, checks) of a one-app AppInspect JSON report."""
    with open(path, encoding="utf-8") as handle:
        document = json.load(handle)
    checks = [check for app in document["reports"] for group in app["groups"] for check in group["checks"]]
    return document["summary"], checks


def judge(name: str, summary: Dict[str, int], checks: List[dict]) -> List[str]:
    """The problems that fail the gate (empty: the run passes)."""
    problems = [f"{name}: summary {key} = {summary.get(key)}" for key in BLOCKING if summary.get(key) != 0]
    for check in checks:
        messages = check.get("messages") or []
        bad = [message for message in messages if message.get("result") in BLOCKING]
        if check["result"] in BLOCKING and not bad:
            bad = messages or [{"message": "(no message)"}]
        for message in bad:
            result = message.get("result") or check["result"]
            problems.append(f"{name}: {result} {check['name']}: {one_line(message)}")
    return problems


def one_line(message: dict) -> str:
    text = " ".join(str(message.get("message", "")).split())
    where = message.get("message_filename")
    if where and where != "None" and where not in text:
        text += f" [{where}]"
    return text


def remaining(name: str, checks: List[dict]) -> List[str]:
    """One line per warning or skip message left in a run."""
    lines = []
    for check in checks:
        if check["result"] not in SHOWN:
            continue
        mark = " (future-tagged check)" if "future" in (check.get("tags") or []) else ""
        for message in check.get("messages") or []:
            if message.get("result") in SHOWN:
                lines.append(f"  {name}: {message['result']} {check['name']}{mark}: {one_line(message)}")
    return lines


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package", help="the .tgz built by scripts/package.sh")
    parser.add_argument("--out-dir", default="build/appinspect", help="where the JSON reports and logs go")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.package):
        print(f"ERROR: inspect: {args.package} not found (run make package)", file=sys.stderr)
        return 2
    os.makedirs(args.out_dir, exist_ok=True)

    started = time.monotonic()
    running = []
    for name, extra in RUNS:
        report = os.path.join(args.out_dir, f"{name}.json")
        log_path = os.path.join(args.out_dir, f"{name}.log")
        if os.path.exists(report):
            os.remove(report)
        log = open(log_path, "w", encoding="utf-8")  # closed once the run ends
        command = appinspect_command(args.package, report, extra)
        log.write(" ".join(command) + "\n")
        log.flush()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        running.append((name, report, log_path, log, process, time.monotonic()))

    problems: List[str] = []
    for name, report, log_path, log, process, began in running:
        returncode = process.wait()
        log.close()
        seconds = time.monotonic() - began
        if returncode != 0 or not os.path.exists(report):
            with open(log_path, encoding="utf-8", errors="replace") as handle:
                tail = handle.read()[-2000:]
            problems.append(f"{name}: splunk-appinspect exited {returncode} (log {log_path}):\n{tail}")
            continue
        summary, checks = read_report(report)
        counts = ", ".join(f"{key} {summary.get(key, 0)}" for key in (*BLOCKING, "warning", "skipped", "success"))
        print(f"appinspect {name}: {counts}, not_applicable {summary.get('not_applicable', 0)} ({seconds:.1f} s)")
        for line in remaining(name, checks):
            print(line)
        problems.extend(judge(name, summary, checks))

    print(f"appinspect: reports in {args.out_dir}/ ({time.monotonic() - started:.1f} s)")
    if problems:
        print("ERROR: AppInspect gate failed (failures, errors and future failures must be 0):", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print("appinspect: OK (0 failures, 0 errors, 0 future failures in precert and cloud)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
