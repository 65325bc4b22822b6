"""A tenant's certificate files on the host, as versioned directories behind a ``live`` link.

Layout under ``cert_dir``::

    v20261125T120000Z-1a2b3c4d/   0700  privkey.pem (0600), fullchain.pem (0644)
    v20270120T080000Z-5e6f7a8b/   0700  ...
    live -> v20270120T080000Z-5e6f7a8b   (relative symlink)

nginx reads ``live/fullchain.pem`` and ``live/privkey.pem``. A new pair is written into a fresh
version directory nobody reads yet, then ``live`` is swapped with one ``rename(2)`` over the
link, so every reader (``nginx -t``, a reload, a restart) sees either the old pair or the
new one, never a key of one with the chain of the other. A run killed before the swap leaves
only an unreferenced directory, removed by the next successful swap's prune.

Callers hold the host's nginx lock around write, swap and prune. Every command is an argv
list; every path is built from ``cert_dir`` (the spec) and names made here, never from input.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime

from omni.transport.base import Transport

LIVE = "live"
PRIVKEY = "privkey.pem"
FULLCHAIN = "fullchain.pem"
PRIVKEY_MODE = 0o600
FULLCHAIN_MODE = 0o644
_TMP_PREFIX = ".live.tmp-"
VERSION = re.compile(r"^v[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$")


def version_name(now: datetime, token: str | None = None) -> str:
    """``v<UTC stamp>-<8 hex>``; random unless ``token`` is given (tests)."""
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"v{stamp}-{token if token is not None else secrets.token_hex(4)}"


def write_version(
    transport: Transport, cert_dir: str, privkey_pem: bytes, fullchain_pem: bytes
) -> str:
    """Write the pair into a new 0700 version directory; return its name. Not yet live.

    Key first, chain second: a reader only ever follows ``live``, so order does not matter
    for safety, but a directory without a chain is plainly unfinished when inspected.
    """
    name = version_name(datetime.now(UTC))
    transport.run(["mkdir", "-p", "--", cert_dir])
    # No -p: a name collision must fail rather than mix two runs' files.
    transport.run(["mkdir", "-m", "700", "--", f"{cert_dir}/{name}"])
    transport.write_file(f"{cert_dir}/{name}/{PRIVKEY}", privkey_pem, mode=PRIVKEY_MODE)
    transport.write_file(f"{cert_dir}/{name}/{FULLCHAIN}", fullchain_pem, mode=FULLCHAIN_MODE)
    return name


def live_version(transport: Transport, cert_dir: str) -> str | None:
    """The version ``live`` points at, or None (no link, or a target not made here)."""
    result = transport.run(["readlink", "--", f"{cert_dir}/{LIVE}"], check=False)
    if not result.ok:
        return None
    target = result.text().strip().rstrip("/")
    return target if VERSION.fullmatch(target) else None


def point_live(transport: Transport, cert_dir: str, name: str) -> None:
    """Atomically make ``live`` point at version ``name`` (rename of a new link over it)."""
    if not VERSION.fullmatch(name):
        raise ValueError(f"not a certificate version name: {name!r}")
    tmp = f"{cert_dir}/{_TMP_PREFIX}{secrets.token_hex(4)}"
    transport.run(["ln", "-s", "--", name, tmp])
    try:
        # -T: replace the link itself, never move into the directory it points at.
        transport.run(["mv", "-T", "-f", "--", tmp, f"{cert_dir}/{LIVE}"])
    except BaseException:
        transport.run(["rm", "-f", "--", tmp], check=False)
        raise


def versions(transport: Transport, cert_dir: str) -> list[str]:
    """Names of the version directories present, sorted (oldest stamp first)."""
    listing = transport.run(
        [
            "find",
            cert_dir,
            "-mindepth",
            "1",
            "-maxdepth",
            "1",
            "-type",
            "d",
            "-name",
            "v*",
            "-printf",
            "%f\\n",
        ],
        check=False,
    )
    if not listing.ok:
        return []
    return sorted(n for n in listing.text().splitlines() if VERSION.fullmatch(n))


def prune(
    transport: Transport,
    cert_dir: str,
    keep: Iterable[str | None],
    legacy_in_use: bool,
) -> list[str]:
    """Remove version directories not in ``keep``, stale temp links, and (unless
    ``legacy_in_use``) the pre-versioning ``privkey.pem``/``fullchain.pem`` directly in
    ``cert_dir``. Returns the removed version names.
    """
    kept = {name for name in keep if name}
    doomed = [name for name in versions(transport, cert_dir) if name not in kept]
    paths = [f"{cert_dir}/{name}" for name in doomed]
    if not legacy_in_use:
        paths += [f"{cert_dir}/{PRIVKEY}", f"{cert_dir}/{FULLCHAIN}"]
    if paths:
        transport.run(["rm", "-rf", "--", *paths])
    transport.run(
        [
            "find",
            cert_dir,
            "-mindepth",
            "1",
            "-maxdepth",
            "1",
            "-type",
            "l",
            "-name",
            f"{_TMP_PREFIX}*",
            "-delete",
        ],
        check=False,
    )
    return doomed
