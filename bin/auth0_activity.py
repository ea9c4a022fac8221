"""Modular input `auth0_activity` (TA-auth0): splunkd runs this file.

Thin on purpose: put the add-on's own package (bin/) and the vendored
libraries (lib/) first on sys.path, so Splunk's bundled site-packages never
shadow the pinned versions, then hand over to ta_auth0.modinput.
"""

import os
import sys

_BIN = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [_BIN, os.path.join(os.path.dirname(_BIN), "lib")]

from ta_auth0.modinput import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
