#!/usr/bin/env bash
# Build the installable app: OUT_DIR/TA-auth0-<version>.tgz (default dist/).
#
#   scripts/package.sh [OUT_DIR]        (PY39: the Python 3.9 for pip; found
#                                        through pyenv when unset)
#
# The archive holds one folder, TA-auth0/, with the app files from this work
# tree (an allow-list: bin, default, lookups, metadata/default.meta, README, README.md,
# LICENSE, static, appserver) and a lib/ built fresh from the pinned, hashed
# requirements by scripts/build_lib.sh (pure Python only; it fails on any
# compiled file). Never in it: tests, caches, byte code, dotfiles, local/,
# local.meta, dev files. Modes as AppInspect and Splunk Cloud want them:
# directories 755, files 644 -- no execute bits, splunkd runs bin/*.py through
# its own Python. Owner root (0/0), entries sorted, every mtime = the last
# commit's time (or SOURCE_DATE_EPOCH), gzip without a name or stamp: the same
# tree gives the same bytes.
#
# The version has one source, default/app.conf [id] version; [launcher]
# version must say the same.
set -euo pipefail

APP_ID=TA-auth0
here=$(cd "$(dirname "$0")/.." && pwd)
out_dir=${1:-$here/dist}

die() { echo "ERROR: package: $*" >&2; exit 1; }

# What must never ship: compiled code (only pure Python runs on every Splunk
# platform; AppInspect fails binaries), byte code, links, hidden files.
refuse_unshippable() {
  local bad
  bad=$(find "$stage" \( -type l -o -type f \( -name '*.so' -o -name '*.so.*' -o -name '*.pyd' -o -name '*.dll' \
    -o -name '*.dylib' -o -name '*.exe' -o -name '*.py[co]' \) -o -name __pycache__ -o -name '.*' \) -print | head -5)
  [ -z "$bad" ] || die "would package compiled files, byte code, links or hidden files:"$'\n'"${bad//$stage\//}"
}

# conf_value FILE STANZA KEY: the value Splunk would read (the last one wins).
conf_value() {
  awk -v want="[$2]" -v key="$3" '
    /^[[:space:]]*[#;]/ { next }
    /^[[:space:]]*\[/ { s = $0; gsub(/[[:space:]]/, "", s); inside = (s == want); next }
    inside {
      n = index($0, "=")
      if (!n) next
      k = substr($0, 1, n - 1); gsub(/^[[:space:]]+|[[:space:]]+$/, "", k)
      if (k != key) next
      v = substr($0, n + 1); gsub(/^[[:space:]]+|[[:space:]]+$/, "", v)
      found = v
    }
    END { print found }' "$1"
}

app_conf=$here/default/app.conf
[ -f "$app_conf" ] || die "$app_conf not found"
version=$(conf_value "$app_conf" id version)
launcher_version=$(conf_value "$app_conf" launcher version)
[ -n "$version" ] || die "no [id] version in default/app.conf"
# AppInspect wants x.y.z (semver); Splunkbase rejects anything else.
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$ ]] \
  || die "[id] version '$version' in default/app.conf is not x.y.z"
[ "$launcher_version" = "$version" ] \
  || die "default/app.conf: [launcher] version '$launcher_version' differs from [id] version '$version' (the one source)"
# Splunk installs the app under the folder name: [package] id and [id] name
# must be that name (AppInspect fails a mismatch).
[ "$(conf_value "$app_conf" package id)" = "$APP_ID" ] || die "default/app.conf: [package] id must be $APP_ID"
[ "$(conf_value "$app_conf" id name)" = "$APP_ID" ] || die "default/app.conf: [id] name must be $APP_ID"

if [ -z "${PY39:-}" ]; then
  pyenv_root=$(pyenv root 2>/dev/null || true)
  PY39=$(ls -d "$pyenv_root"/versions/3.9*/bin/python 2>/dev/null | sort -V | tail -1 || true)
  [ -x "$PY39" ] || die "set PY39 to a Python 3.9 (vendoring must run with the interpreter Splunk uses)"
  export PY39
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/ta-auth0-package.XXXXXX")
trap 'rm -rf "$work"' EXIT
stage=$work/$APP_ID
mkdir -p "$stage/metadata"

# --- the app files: an allow-list, so nothing new slips in unnoticed ----------
for entry in bin default lookups README static appserver README.md LICENSE LICENSE.txt NOTICE; do
  if [ -e "$here/$entry" ]; then cp -R "$here/$entry" "$stage/"; fi
done
cp "$here/metadata/default.meta" "$stage/metadata/"
for required in bin/auth0_activity.py default/app.conf default/inputs.conf README/inputs.conf.spec; do
  [ -f "$stage/$required" ] || die "$required is missing"
done
# Leftovers of development and editors: byte code, caches, hidden files,
# backups, local settings.
find "$stage" -depth \( -name __pycache__ -o -name '.*' -o -name local -o -name local.meta \
  -o -name '*.py[co]' -o -name '*~' -o -name '*.swp' -o -name '*.bak' -o -name '*.orig' -o -name '*.rej' \) \
  -exec rm -rf {} +
refuse_unshippable

# --- the vendored libraries, built fresh from the pins ------------------------
"$here/scripts/build_lib.sh" "$stage/lib"

refuse_unshippable

find "$stage" -type d -exec chmod 755 {} +
find "$stage" -type f -exec chmod 644 {} +

# --- the archive --------------------------------------------------------------
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$here" log -1 --format=%ct 2>/dev/null || echo 0)}
mkdir -p "$out_dir"
archive=$out_dir/$APP_ID-$version.tgz
tar -C "$work" --sort=name --format=gnu --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
  -cf - "$APP_ID" | gzip -9n >"$archive.tmp"
mv "$archive.tmp" "$archive"

files=$(find "$stage" -type f | wc -l)
size=$(wc -c <"$archive")
echo "package: $archive ($files files, $size bytes, version $version)" >&2
echo "$archive"
