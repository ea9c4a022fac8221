"""make mutants: mutation testing of bin/ta_auth0/ with mutmut 3.x (issue 10).

A figure, not a gate. mutmut plants one small bug at a time (a flipped
comparison, a changed constant, a dropped argument...) in a copy of the
package and runs the tests that reach the mutated function; a mutant no test
notices "survived". This prints, per module, the mutants, how many the suite
killed, how many survived, and each survivor's diff.

Why a driver around mutmut, and not `mutmut run` in the repository:
- mutmut names a module after its path from the working directory (or src/):
  ours lives in bin/ta_auth0/ but is imported as `ta_auth0`, so each pass
  runs in a workspace of its own (build/mutants/<pass>/) holding the package
  as ta_auth0/, the tests, and an app folder (bin/auth0_activity.py, lib/,
  default/) that the tests' ADDON_APP_DIR names;
- mutmut sees, and switches mutants on, only in the test process, so the
  end-to-end tests run the add-on in that process (TA_AUTH0_IN_PROCESS=1,
  tests/addon.py); those that need a real process are marked `subprocess`
  and left out here (they still run in make test);
- passes bound the time (STAGES): the unit tests first, then the end-to-end
  tests per group of modules (with the test files of that group's
  behaviour) for what no unit test reached, or on request for every
  survivor too, and on request the `slow` ones for the modules that wait.
  Per mutant, mutmut runs only the tests of the pass that reach the mutated
  function, fastest first (tests/conftest.py), and stops at the first
  failure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Stage:
    name: str
    modules: Tuple[str, ...]  # the modules whose mutants this pass runs; () = all
    tests: Tuple[str, ...]  # pytest arguments, relative to the repository
    markers: str  # the pytest -m expression that picks the pass's tests
    max_children: int
    # A pytest -k expression; "not kvstore" leaves out the KV store runs of
    # the both_stores tests, which repeat the local runs' behaviour with
    # another store: only the KV store modules' pass needs them.
    keywords: str = ""
    on_request: bool = False  # run only when --passes names it
    # By default, only the mutants no earlier pass's tests reached ("no
    # tests"); the survivors too when --passes names this pass.
    survivors_on_request: bool = False


# Passes over the same mutants, cheapest first: each gets only what the ones
# before left alive. The unit tests run in milliseconds and kill most mutants;
# they talk to the fake tenant and splunkd over the same HTTPS seam as the
# add-on does. Then the end-to-end tests (in process, against the fakes), per
# group of modules with the test files that hold those modules' behaviour: a
# surviving mutant costs every covering test, and almost every end-to-end
# test passes through the collector and the Auth0 client, so the whole
# end-to-end suite per survivor would take hours. The transport is judged by
# its unit tests only: every end-to-end test reaches it through the same
# calls, and its survivors (pool and timeout settings the library overrides)
# cost 15 minutes of end-to-end and slow tests in the complete run of
# e6d252b, for three "kills" that were the load's (see Workers). The `slow`
# tests (back-off, rate-limit resets, the proxy) run only when asked for
# (--passes slow): they wait for real seconds, and what they killed in that
# run is now killed by unit tests.
#
# By default the end-to-end passes take only the mutants no unit test
# reaches ("no tests"): in the complete run of e9eb58d (54 minutes) they
# retried the 192 survivors of their modules for 18 minutes and killed none
# (each is explained in README). Naming a pass in --passes makes it retry the
# survivors too: worth it when a change adds code whose unit tests are thin.
#
# Workers: two per core for the unit tests, which wait on their fakes most
# of the time (one per core left half the machine idle: 4.1 mutants a second
# against 5.8 with two per core, on `activity`, the same survivors); one more
# than the cores for the end-to-end passes. At four per core the end-to-end
# passes "killed" mutants that are plainly equivalent (a default passed
# explicitly, a pool of two for one thread): each passes every covering test
# when run alone, so a test's timing gave way under the load.
#
# The end-to-end passes run the end-to-end test files only: what they get
# has passed every unit test that reaches it already, and with the unit
# tests in the selection each survivor paid for them again.
CORES = os.cpu_count() or 2
UNIT = "tests/unit"
E2E = "not subprocess and not slow"


def e2e(*names: str) -> Tuple[str, ...]:
    return tuple(f"tests/e2e/test_{name}.py" for name in names)


LOCAL = "not kvstore"

STAGES = (
    Stage("unit", (), (UNIT,), "not subprocess", 2 * CORES),
    Stage(
        "e2e-rules",
        ("activity", "collector", "config", "state", "stream", "__init__"),
        e2e("collect", "collect_all", "promises", "delivery", "faults", "bench_floor"),
        E2E,
        CORES + 1,
        LOCAL,
        survivors_on_request=True,
    ),
    Stage(
        "e2e-auth0",
        ("auth0_api", "pacing", "flags"),
        e2e("faults", "promises", "collect"),
        E2E,
        CORES + 1,
        LOCAL,
        survivors_on_request=True,
    ),
    Stage(
        "e2e-kvstore",
        ("kvstate", "lease", "stores", "splunkrest"),
        e2e("cluster", "faults", "collect"),
        E2E,
        CORES + 1,
        survivors_on_request=True,
    ),
    Stage(
        "e2e-splunkd",
        ("credentials", "scheme", "modinput", "runlog"),
        e2e("secrets", "secret_store_outage", "validation", "collect", "faults"),
        E2E,
        CORES + 1,
        LOCAL,
        survivors_on_request=True,
    ),
    Stage(
        "slow",
        ("auth0_api", "transport", "pacing", "flags", "collector", "credentials"),  # credentials: the proxy's password
        ("tests/e2e",),
        "slow and not subprocess",
        2 * CORES,  # they mostly sleep
        LOCAL,
        on_request=True,
    ),
)

# Message prose (a string literal of four or more words) is not mutated:
# scripts/mutmut_cli.py, which runs mutmut's CLI, says why and how.
# Lines that hold SQL text: its upper/lower-case mutants are equivalent.
SQL = r'"(SELECT|INSERT|UPDATE|DELETE|CREATE|PRAGMA|BEGIN|COMMIT|ROLLBACK)\b'

APP_FILES = ("default", "lookups", "metadata", "README.md")

# What mutmut's `results` prints per mutant, and how we count it.
KILLED = {"killed", "timeout", "segfault", "caught by type check"}
RESULT_LINE = re.compile(r"^\s*(ta_auth0\.\S+): (.+)$")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", help="comma-separated modules of bin/ta_auth0 (default: all)")
    parser.add_argument("--python", default=str(REPO / ".venv-mutants" / "bin" / "python"), help="mutmut's venv")
    parser.add_argument("--out", default=str(REPO / "build" / "mutants"), help="where the passes' workspaces go")
    parser.add_argument("--no-diffs", action="store_true", help="do not print the survivors' diffs")
    parser.add_argument(
        "--passes",
        help="comma-separated passes to run, in this order: "
        + ", ".join(f"{s.name} (on request)" if s.on_request else s.name for s in STAGES)
        + "; default: all but those on request",
    )
    args = parser.parse_args()
    package = REPO / "bin" / "ta_auth0"
    modules = args.modules.split(",") if args.modules else sorted(path.stem for path in package.glob("*.py"))
    missing = [module for module in modules if not (package / f"{module}.py").exists()]
    if missing:
        parser.error(f"no such module(s) in bin/ta_auth0: {', '.join(missing)}")
    named = args.passes.split(",") if args.passes else []
    asked = named or [stage.name for stage in STAGES if not stage.on_request]
    stages = [stage for stage in STAGES if stage.name in asked]
    if not stages:
        parser.error(f"no such pass(es): {args.passes}")

    last_of: Dict[str, Path] = {}  # mutant -> the workspace of its last pass (for `mutmut show`)
    status: Dict[str, str] = {}  # mutant -> its last verdict
    for stage in stages:
        scope = [module for module in modules if not stage.modules or module in stage.modules]
        if not scope:
            continue
        untested_only = stage.survivors_on_request and stage.name not in named
        names = [
            key
            for key, verdict in status.items()
            if (verdict == "no tests" if untested_only else verdict not in KILLED) and module_of(key) in scope
        ]
        if status and not names:
            if untested_only:
                alive = sum(1 for key, v in status.items() if v not in KILLED and module_of(key) in scope)
                print(
                    f"== {stage.name} tests: no mutant the tests before left untested; {alive} survivors, "
                    f"retried when --passes names {stage.name}"
                )
            continue
        workspace = Path(args.out).resolve() / stage.name
        prepare(workspace, stage, scope)
        started = time.monotonic()
        log = workspace / "mutmut-run.log"
        with open(log, "w", encoding="utf-8") as out:
            code = subprocess.call(
                [*mutmut_command(args.python), "run", "--max-children", str(stage.max_children), *names],
                cwd=workspace,
                env=environment(workspace),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        took = time.monotonic() - started
        if code != 0:
            print(f"ERROR: mutmut run ({stage.name} tests) exited {code}; its output: {log}", file=sys.stderr)
            return code
        verdicts = dict(parse_results(mutmut(args.python, workspace, "results", "--all", "true")))
        if not status:
            status = verdicts
        else:
            # A pass whose tests do not reach a mutant says nothing of it: it
            # keeps the verdict of the pass that did ("survived", not "no tests").
            status.update((key, verdicts[key]) for key in names if verdicts.get(key, "no tests") != "no tests")
        last_of.update((key, workspace) for key in (names or verdicts))
        left = sum(1 for verdict in status.values() if verdict not in KILLED)
        print(
            f"== {stage.name} tests: {len(names) or len(status)} mutants run in {took:.0f} s, {left} not killed in all"
        )

    report(status)
    if not args.no_diffs:
        left = [key for key, verdict in status.items() if verdict not in KILLED]
        if left:
            print("\nNot killed (each is killed by a test or explained in README, Development > Mutation testing):")
        for workspace in sorted({last_of[key] for key in left}):
            names = "\n".join(key for key in left if last_of[key] == workspace)
            print(mutmut(args.python, workspace, "show-stdin", stdin=names).rstrip())
    return 0


def mutmut_command(python: str) -> List[str]:
    return [python, str(REPO / "scripts" / "mutmut_cli.py")]


def mutmut(python: str, workspace: Path, *args: str, stdin: str = "") -> str:
    return subprocess.run(
        [*mutmut_command(python), *args],
        input=stdin,
        cwd=workspace,
        env=environment(workspace),
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def prepare(workspace: Path, stage: Stage, modules: List[str]) -> None:
    """A fresh workspace: the package as ta_auth0/, the tests, the app folder."""
    if workspace.exists():
        shutil.rmtree(workspace)
    (workspace / "app" / "bin").mkdir(parents=True)
    shutil.copytree(REPO / "bin" / "ta_auth0", workspace / "ta_auth0", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "tests", workspace / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "bin" / "auth0_activity.py", workspace / "app" / "bin")
    for name in ("lib", "default"):
        (workspace / "app" / name).symlink_to(REPO / name)
    for name in APP_FILES:  # some tests read the app's files beside tests/
        (workspace / name).symlink_to(REPO / name)
    settings = {
        "source_paths": ["ta_auth0"],
        "also_copy": list(APP_FILES),
        "do_not_mutate_patterns": [SQL],
        "only_mutate": [f"ta_auth0/{module}.py" for module in modules],
        "pytest_add_cli_args_test_selection": list(stage.tests),
        # mutmut stops a mutant's tests after (estimate + 1 s) x multiplier x 2
        # CPU-seconds. Its default, 15, let each mutant that loops (a retry
        # count that never grows) spin for three minutes of a worker; a test
        # run uses less CPU than its wall time, so 3 (six times) is ample.
        "timeout_multiplier": 3.0,
        # xdist off: mutmut forks its own workers.
        "pytest_add_cli_args": ["-p", "no:xdist", "-p", "no:cacheprovider", "-m", stage.markers]
        + (["-k", stage.keywords] if stage.keywords else []),
    }
    # A JSON string or list of them is a TOML value too.
    table = "".join(f"{key} = {json.dumps(value)}\n" for key, value in settings.items())
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    (workspace / "pyproject.toml").write_text(f"{pyproject}\n[tool.mutmut]\n{table}", encoding="utf-8")


def environment(workspace: Path) -> Dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "TA_AUTH0_IN_PROCESS": "1",
            "ADDON_APP_DIR": str(workspace / "app"),
            "ADDON_PYTHON": sys.executable,
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    return env


def parse_results(text: str) -> List[Tuple[str, str]]:
    return [(m.group(1), m.group(2).strip()) for m in map(RESULT_LINE.match, text.splitlines()) if m]


def module_of(key: str) -> str:
    """ta_auth0.<module>.x_<function>, or ta_auth0.x_<function> for __init__."""
    module = key.split(".")[1]
    return "__init__" if module.startswith(("x_", "xǁ")) else module


def report(status: Dict[str, str]) -> None:
    totals: Dict[str, Counter] = {}
    for key, verdict in status.items():
        totals.setdefault(module_of(key), Counter())[verdict] += 1
    print(f"\n{'module':<14}{'mutants':>9}{'killed':>9}{'survived':>10}{'no tests':>10}{'killed %':>10}")
    grand: Counter = Counter()
    for module in sorted(totals):
        counts = totals[module]
        grand.update(counts)
        print(row(module, counts))
    print(row("all", grand))


def row(name: str, counts: Counter) -> str:
    total = sum(counts.values())
    killed = sum(n for status, n in counts.items() if status in KILLED)
    no_tests = counts.get("no tests", 0)
    survived = total - killed - no_tests
    share = f"{100 * killed / total:.1f}" if total else "-"
    return f"{name:<14}{total:>9}{killed:>9}{survived:>10}{no_tests:>10}{share:>10}"


if __name__ == "__main__":
    sys.exit(main())
