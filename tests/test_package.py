"""The installable archive (SPEC §2): what `make package` builds is what
`splunk install app`, Splunkbase and Splunk Cloud take.

The archive under test is the one named by TA_AUTH0_PACKAGE (`make
test-package` passes dist/TA-auth0-<version>.tgz), else one built here by
scripts/package.sh into a temporary folder. Its script is run by ADDON_PYTHON
(a bare venv in `make test`: nothing installed, like Splunk's own Python), so
a library missing from the vendored lib/ fails here.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from typing import Dict, List

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = "TA-auth0"
ADDON_PYTHON = os.environ.get("ADDON_PYTHON") or sys.executable
PACKAGE_SH = os.path.join(REPO, "scripts", "package.sh")

# SPEC §3: the input's own parameters (interval, index, disabled are Splunk's).
SPEC_ARGS = {
    "domain",
    "client_id",
    "client_secret",
    "start_from",
    "update_metadata",
    "metadata_flag",
    "proxy_url",
    "log_level",
    "collect",
    "state_store",
}
REQUIRED_ARGS = {"domain", "client_id", "client_secret"}

REQUIRED_FILES = [
    "bin/auth0_activity.py",
    "bin/ta_auth0/__init__.py",
    "bin/ta_auth0/modinput.py",
    "default/app.conf",
    "default/inputs.conf",
    "default/collections.conf",
    "README/inputs.conf.spec",
    "metadata/default.meta",
    # Search-time knowledge: the log type table the CIM mapping hangs on.
    "default/transforms.conf",
    "lookups/auth0_log_types.csv",
    "lib/splunklib/__init__.py",
    "lib/splunklib/modularinput/__init__.py",
    "lib/auth0/__init__.py",
    "lib/requests/__init__.py",
    "lib/urllib3/__init__.py",
    "lib/certifi/cacert.pem",
]
COMPILED = (".pyc", ".pyo", ".so", ".pyd", ".dll", ".dylib", ".exe")
DEV_FILES = {"Makefile", "pyproject.toml", "scripts", "tests", ".ci", "docs", "local", "build", "dist", ".git"}


def read_conf(text: str) -> Dict[str, Dict[str, str]]:
    """A Splunk .conf as {stanza: {key: value}} (comments skipped, last value wins)."""
    conf: Dict[str, Dict[str, str]] = {"default": {}}
    stanza = conf["default"]
    for raw in text.splitlines():
        line = raw.strip()
        # Comments, and a .spec file's "* ..." notes and their indented lines.
        if not line or line.startswith(("#", ";", "*")) or raw[:1].isspace():
            continue
        if line.startswith("["):
            stanza = conf.setdefault(line[1 : line.index("]")], {})
        elif "=" in line:
            key, value = line.split("=", 1)
            stanza[key.strip()] = value.strip()
    return conf


def build_package(out_dir: str, repo: str = REPO) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "SOURCE_DATE_EPOCH"}
    return subprocess.run(
        ["bash", os.path.join(repo, "scripts", "package.sh"), out_dir],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> str:
    named = os.environ.get("TA_AUTH0_PACKAGE")
    if named:
        assert os.path.isfile(named), f"TA_AUTH0_PACKAGE={named} does not exist"
        return named
    out = str(tmp_path_factory.mktemp("dist"))
    done = build_package(out)
    assert done.returncode == 0, f"scripts/package.sh failed:\n{done.stderr}"
    path = done.stdout.strip().splitlines()[-1]
    assert os.path.dirname(path) == out and os.path.isfile(path), done.stdout
    return path


@pytest.fixture(scope="module")
def members(package) -> List[tarfile.TarInfo]:
    with tarfile.open(package, "r:gz") as archive:
        return archive.getmembers()


@pytest.fixture(scope="module")
def names(members) -> List[str]:
    return [member.name for member in members]


@pytest.fixture(scope="module")
def unpacked(package, tmp_path_factory) -> str:
    """The archive extracted as `splunk install app` would; returns the app folder."""
    target = str(tmp_path_factory.mktemp("apps"))
    with tarfile.open(package, "r:gz") as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(target, filter="data")
        else:  # pragma: no cover - Python 3.9 before 3.9.17
            archive.extractall(target)
    return os.path.join(target, APP)


def relative(name: str) -> str:
    return name[len(APP) + 1 :] if name.startswith(APP + "/") else ""


def read_member(package: str, path: str) -> str:
    with tarfile.open(package, "r:gz") as archive:
        handle = archive.extractfile(f"{APP}/{path}")
        assert handle is not None, path
        return handle.read().decode("utf-8")


# --- the archive's shape ------------------------------------------------------


def test_one_top_folder_named_after_the_app(names):
    assert names[0] == APP, names[:3]
    strays = [name for name in names if name != APP and not name.startswith(APP + "/")]
    assert not strays, f"outside {APP}/ (or with a ./ prefix): {strays[:5]}"
    assert not [name for name in names if ".." in name.split("/") or name.startswith("/")]


def test_required_files_are_present(names):
    missing = [path for path in REQUIRED_FILES if f"{APP}/{path}" not in names]
    assert not missing, f"missing from the package: {missing}"


def test_only_plain_files_and_folders(members):
    odd = [member.name for member in members if not (member.isfile() or member.isdir())]
    assert not odd, f"links or special files: {odd[:5]}"


def test_nothing_compiled_cached_or_from_development(names):
    paths = [relative(name) for name in names if relative(name)]
    compiled = [path for path in paths if path.endswith(COMPILED) or "__pycache__" in path.split("/")]
    assert not compiled, f"compiled or byte code: {compiled[:5]}"
    test_dirs = [path for path in paths if {"tests", "test"} & set(path.split("/")[:-1])]
    assert not test_dirs, f"test suites: {test_dirs[:5]}"
    dev = [path for path in paths if path.split("/")[0] in DEV_FILES or path.startswith("requirements")]
    assert not dev, f"development files: {dev[:5]}"
    local = [path for path in paths if path.startswith("local/") or path.endswith("local.meta")]
    assert not local, f"local settings: {local[:5]}"
    # AppInspect allows hidden files under bin/ and lib/ only; ours ship none
    # outside the vendored libraries.
    hidden = [path for path in paths if not path.startswith("lib/") and any(p.startswith(".") for p in path.split("/"))]
    assert not hidden, f"hidden files: {hidden[:5]}"


def test_modes_owner_and_time_are_normalized(members):
    """Folders 755, files 644: AppInspect fails execute bits outside bin/, and
    splunkd runs bin/auth0_activity.py through its own Python, so nothing
    needs one (Splunk's advice for interpreter-run scripts is 644 too)."""
    wrong = [
        f"{member.name} {stat.filemode(member.mode | (stat.S_IFDIR if member.isdir() else stat.S_IFREG))}"
        for member in members
        if member.mode != (0o755 if member.isdir() else 0o644)
    ]
    assert not wrong, f"modes: {wrong[:5]}"
    owners = {(member.uid, member.gid, member.uname, member.gname) for member in members}
    assert owners <= {(0, 0, "", ""), (0, 0, "root", "root")}, owners
    assert len({member.mtime for member in members}) == 1, "one mtime for every entry (a reproducible archive)"


# --- one version, the Pythons, the pins --------------------------------------


def test_version_in_the_name_is_app_conf_version(package):
    packaged = read_conf(read_member(package, "default/app.conf"))
    version = packaged["id"]["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    assert os.path.basename(package) == f"{APP}-{version}.tgz"
    assert packaged["launcher"]["version"] == version
    assert packaged["package"]["id"] == APP and packaged["id"]["name"] == APP
    assert packaged["install"]["is_configured"] == "false"
    if not os.environ.get("TA_AUTH0_PACKAGE"):  # built here, from this tree
        with open(os.path.join(REPO, "default", "app.conf"), encoding="utf-8") as handle:
            assert read_conf(handle.read())["id"]["version"] == version


def test_inputs_conf_names_both_splunk_pythons(package):
    """Splunk 9.3-10.1 run modular inputs with 3.9, 10.2+ and Cloud with 3.13.
    AppInspect fails a missing python.version today and a missing (or
    3.9-only) python.required from 4.4.0."""
    stanza = read_conf(read_member(package, "default/inputs.conf"))["auth0_activity"]
    assert stanza["python.version"] == "python3"
    required = [value.strip() for value in stanza["python.required"].split(",")]
    assert "3.13" in required, required
    assert set(required) <= {"3.9", "3.13"}, required


def test_vendored_urllib3_is_the_1_26_line(package):
    """urllib3 2.x refuses to import where Python's ssl links OpenSSL < 1.1.1,
    as some Splunk 9.x builds' Python does (OpenSSL 1.0.2-fips, PLATFORM.md);
    1.26.x works there and with requests 2.32."""
    version = re.search(r'__version__ = "([^"]+)"', read_member(package, "lib/urllib3/_version.py")).group(1)
    assert version.startswith("1.26."), version


def test_lib_holds_exactly_the_pinned_releases(names):
    """lib/ comes from the hashed pins, nothing more and nothing else."""
    pins: Dict[str, str] = {}
    for requirements in ("requirements.txt", "requirements-splunklib.txt"):
        with open(os.path.join(REPO, requirements), encoding="utf-8") as handle:
            for match in re.finditer(r"^([A-Za-z0-9_.-]+)==([^\s\\]+)", handle.read(), re.MULTILINE):
                pins[re.sub(r"[-_.]+", "_", match.group(1)).lower()] = match.group(2)
    vendored: Dict[str, str] = {}
    for name in names:
        top = relative(name).split("/")
        if len(top) == 2 and top[0] == "lib":
            found = re.fullmatch(r"(.+?)-([^-]+?)(?:-py\d\.\d+)?\.(?:dist|egg)-info", top[1])
            if found:
                vendored[found.group(1).lower()] = found.group(2)
    assert vendored == pins


# --- the unpacked app runs on a Python with nothing installed ----------------


def run_python(splunk_home: str, *args: str) -> subprocess.CompletedProcess:
    """ADDON_PYTHON with a clean environment: no PYTHONPATH, no user site."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    env.update({"PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1", "SPLUNK_HOME": splunk_home})
    return subprocess.run(
        [ADDON_PYTHON, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        timeout=120,
        check=False,
    )


def test_packaged_scheme_runs_with_only_the_vendored_libraries(unpacked, tmp_path):
    done = run_python(str(tmp_path), os.path.join(unpacked, "bin", "auth0_activity.py"), "--scheme")
    assert done.returncode == 0, done.stderr
    scheme = ET.fromstring(done.stdout)
    assert scheme.tag == "scheme"
    assert scheme.findtext("use_external_validation") == "true"
    assert scheme.findtext("streaming_mode") == "xml"
    args = {arg.get("name"): arg for arg in scheme.iter("arg")}
    assert set(args) == SPEC_ARGS
    for name, arg in args.items():
        expected = "true" if name in REQUIRED_ARGS else "false"
        assert arg.findtext("required_on_create") == expected, name
    assert args["update_metadata"].findtext("data_type") == "boolean"


def test_every_import_comes_from_the_package(unpacked, tmp_path):
    """What the add-on imports resolves inside the app folder, not from
    whatever the interpreter has installed."""
    probe = (
        "import os, sys\n"
        "app = sys.argv[1]\n"
        "sys.path[:0] = [os.path.join(app, 'bin'), os.path.join(app, 'lib')]\n"
        "import ta_auth0.modinput, splunklib.client, splunklib.modularinput\n"
        "import auth0.authentication, auth0.management, requests, urllib3, certifi, idna, jwt\n"
        "import charset_normalizer, typing_extensions\n"
        "mods = ('ta_auth0', 'splunklib', 'auth0', 'requests', 'urllib3', 'certifi', 'idna', 'jwt',\n"
        "        'charset_normalizer', 'typing_extensions')\n"
        "for name in mods:\n"
        "    print(name, os.path.realpath(sys.modules[name].__file__))\n"
    )
    done = run_python(str(tmp_path), "-c", probe, unpacked)
    assert done.returncode == 0, done.stderr
    root = os.path.realpath(unpacked) + os.sep
    outside = [line for line in done.stdout.splitlines() if not line.split(" ", 1)[1].startswith(root)]
    assert not outside, f"imported from outside the package: {outside}"


def test_inputs_conf_spec_documents_every_scheme_argument(package):
    spec = read_conf(read_member(package, "README/inputs.conf.spec"))
    stanza = next(values for name, values in spec.items() if name.startswith("auth0_activity://"))
    assert set(stanza) == SPEC_ARGS


# --- the build refuses what must not ship -------------------------------------


def copy_app_sources(target: str) -> None:
    """The files scripts/package.sh reads, in a scratch repository."""
    for entry in ("bin", "default", "metadata", "README", "scripts"):
        shutil.copytree(
            os.path.join(REPO, entry),
            os.path.join(target, entry),
            ignore=shutil.ignore_patterns("__pycache__", "local*"),
        )
    for entry in ("requirements.txt", "requirements-splunklib.txt"):
        shutil.copy(os.path.join(REPO, entry), target)


def test_build_refuses_a_launcher_version_that_differs(tmp_path):
    copy_app_sources(str(tmp_path))
    app_conf = tmp_path / "default" / "app.conf"
    text = app_conf.read_text(encoding="utf-8")
    version = read_conf(text)["id"]["version"]
    launcher = text.index("\n[launcher]")
    app_conf.write_text(
        text[:launcher] + text[launcher:].replace(f"version = {version}", "version = 9.9.9", 1), encoding="utf-8"
    )
    done = build_package(str(tmp_path / "dist"), repo=str(tmp_path))
    assert done.returncode != 0
    assert "[launcher] version '9.9.9' differs" in done.stderr
    assert not (tmp_path / "dist").exists() or not os.listdir(tmp_path / "dist")


def test_build_refuses_a_compiled_file(tmp_path):
    copy_app_sources(str(tmp_path))
    (tmp_path / "bin" / "ta_auth0" / "_speedups.cpython-39-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    done = build_package(str(tmp_path / "dist"), repo=str(tmp_path))
    assert done.returncode != 0
    assert "_speedups.cpython-39-x86_64-linux-gnu.so" in done.stderr
    assert not (tmp_path / "dist").exists() or not os.listdir(tmp_path / "dist")
