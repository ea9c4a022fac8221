"""Shared test set-up: import paths, the test CA, the fakes, the add-on runner.

The add-on under test is the app folder named by ADDON_APP_DIR (default: this
repository) run by the interpreter named by ADDON_PYTHON (default: the one
running the tests; `make test` passes a bare venv with nothing installed, as
Splunk's own Python has none of our dependencies).
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP_DIR = os.path.abspath(os.environ.get("ADDON_APP_DIR") or REPO)
ADDON_PYTHON = os.environ.get("ADDON_PYTHON") or sys.executable

# Unit tests import the add-on's package and its vendored libraries directly.
for path in (os.path.join(APP_DIR, "lib"), os.path.join(APP_DIR, "bin"), REPO):
    if path not in sys.path:
        sys.path.insert(0, path)
