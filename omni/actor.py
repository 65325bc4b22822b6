"""Who is running omni: one name for lock holder files and audit entries.

:func:`actor` is pure apart from the fallbacks it is given: it reads only the mapping passed
in (normally ``os.environ``) and, for the last rule, the user and host names.
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Callable, Mapping


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no passwd entry for a container uid
        return "unknown"


def actor(
    environ: Mapping[str, str],
    *,
    user: Callable[[], str] = _login_name,
    hostname: Callable[[], str] = socket.gethostname,
) -> str:
    """The actor's name, first rule that applies:

    1. ``OMNI_ACTOR`` when set and not blank (an operator or a wrapper names itself);
    2. GitHub Actions (``GITHUB_ACTIONS=true``): ``github:<GITHUB_ACTOR> run <GITHUB_RUN_ID>``;
    3. Windmill (``WM_JOB_ID`` set): ``windmill:<WM_USERNAME or WM_EMAIL> job <WM_JOB_ID>``;
    4. otherwise ``user@hostname`` (``USER``/``LOGNAME`` from ``environ``, else ``user()``).

    Missing parts are shown as ``?`` rather than dropped, so the shape stays recognisable.
    """
    explicit = environ.get("OMNI_ACTOR", "").strip()
    if explicit:
        return explicit
    if environ.get("GITHUB_ACTIONS") == "true":
        return (
            f"github:{environ.get('GITHUB_ACTOR') or '?'} "
            f"run {environ.get('GITHUB_RUN_ID') or '?'}"
        )
    if environ.get("WM_JOB_ID"):
        who = environ.get("WM_USERNAME") or environ.get("WM_EMAIL") or "?"
        return f"windmill:{who} job {environ['WM_JOB_ID']}"
    name = environ.get("USER") or environ.get("LOGNAME") or user()
    return f"{name}@{hostname()}"
