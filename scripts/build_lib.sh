#!/usr/bin/env bash
# Vendor the runtime dependencies into $1 (lib/), pure Python only.
# Pins and hashes: requirements.txt, requirements-splunklib.txt.
set -euo pipefail
target=${1:?usage: build_lib.sh DIR}
: "${PY39:?PY39 must name the Python 3.9 interpreter}"
here=$(cd "$(dirname "$0")/.." && pwd)

rm -rf "$target"
mkdir -p "$target"
# --platform any / --implementation py / --abi none: only pure-Python wheels
# qualify, so a compiled wheel (charset-normalizer's speedups) can never slip in.
"$PY39" -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-compile --no-deps \
  --require-hashes --only-binary=:all: --platform any --implementation py \
  --abi none --python-version 3.9 --target "$target" -r "$here/requirements.txt"
# splunk-sdk is an sdist only (see requirements-splunklib.txt).
"$PY39" -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-compile --no-deps \
  --require-hashes --target "$target" -r "$here/requirements-splunklib.txt"

# What Splunk never needs and AppInspect rejects: console scripts, the
# libraries' own test suites, byte code.
rm -rf "$target/bin"
find "$target" -depth -type d \( -name __pycache__ -o -name tests -o -name test -o -name test_async \) -exec rm -rf {} +
find "$target" -name '*.pyc' -delete

compiled=$(find "$target" -type f \( -name '*.so' -o -name '*.pyd' -o -name '*.dll' -o -name '*.dylib' \) | head -5)
if [ -n "$compiled" ]; then
  echo "ERROR: compiled files would be vendored (only pure Python may ship):" >&2
  echo "$compiled" >&2
  exit 1
fi
