"""TA-auth0: Auth0 signups and logins into Splunk, pulled from the Management API.

Modules, each owning one concern (see README "Design"):
config (parameters), activity (Signup/Login rules, pure), state (sqlite
checkpoint store), auth0_api (every Auth0 call), collector (one run),
credentials (Splunk's credential store), runlog (logging), modinput (the
Splunk side).
"""

APP_NAME = "TA-auth0"


def app_version() -> str:
    """The version in default/app.conf, the one place it is kept."""
    import os
    import re

    conf = os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "default", "app.conf"
    )
    try:
        with open(conf, encoding="utf-8") as handle:
            match = re.search(r"^\[id\][^\[]*?^version\s*=\s*(\S+)", handle.read(), re.M | re.S)
    except OSError:
        return "unknown"
    return match.group(1) if match else "unknown"
