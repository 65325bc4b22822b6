"""The runner every Windmill step (``windmill_scripts/f/omni/*.sh``) execs: one omni run.

Usage (each value is one argv element; options only in the ``--name=VALUE`` form)::

    omni-windmill-step [--inventory=DIR] [--ssh-key-variable=PATH] -- OMNI_ARG...
    python3 -m omni.windmill_step ...   (the same)

Contract:
- inventory: ``--inventory`` if not empty, else ``$OMNI_INVENTORY``; neither -> exit 2.
- ``--ssh-key-variable``: path (``u/...`` or ``f/...``) of a secret Windmill variable holding
  the SSH private key. Its value is read from Windmill's API (``$BASE_INTERNAL_URL``,
  ``$WM_WORKSPACE``) with the job token ``$WM_TOKEN`` in a request header, written to
  ``<private temp dir>/home/.ssh/omni_deploy`` (0600) and omni runs with ``HOME`` set to
  that dir, so the inventory's ``identity: ~/.ssh/omni_deploy`` finds it. The temp dir is
  removed in ``finally`` (also on SIGTERM). Empty or ``none``: no key, omni uses the identity
  file the inventory names on the worker. The key and the token are never printed, never on
  a command line, and ``WM_TOKEN`` is not passed on to omni.
- runs ``omni --inventory=INV --json OMNI_ARG...`` (``$OMNI_BIN`` if set, else this
  interpreter's ``-m omni.cli``) with stdin closed and stderr passed through; its stdout (the
  JSON envelope) is written to ``./result.json`` (Windmill's step result) and printed as the
  last stdout line.
- exit status: omni's (128+N if a signal N ended it); a problem of the runner's own (bad
  arguments, no inventory, unreadable key variable, omni not runnable) is one line
  ``error[invalid_input]: FIELD: ...`` on stderr, exit 2, before omni runs, no result.json.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from types import FrameType
from typing import IO

from omni.errors import ExitCode, InvalidInput
from omni.output.render import error_line

_VARIABLE_PATH = re.compile(r"[uf]/[A-Za-z0-9_][A-Za-z0-9_./-]*")
_FETCH_TIMEOUT_S = 30.0
_KEY_MARKER = "PRIVATE KEY-----"


@dataclass(frozen=True)
class StepArgs:
    """The runner's parsed command line."""

    inventory: str
    ssh_key_variable: str
    omni_args: tuple[str, ...]


def parse_args(argv: Sequence[str]) -> StepArgs:
    """Split ``[--inventory=DIR] [--ssh-key-variable=PATH] -- OMNI_ARG...``.

    Everything after the first ``--`` goes to omni untouched (a slug like ``--evil`` after
    omni's own ``--`` stays an argument). Raises InvalidInput on anything else.
    """
    options = {"--inventory": "", "--ssh-key-variable": ""}
    for index, arg in enumerate(argv):
        if arg == "--":
            return StepArgs(
                inventory=options["--inventory"],
                ssh_key_variable=options["--ssh-key-variable"],
                omni_args=tuple(argv[index + 1 :]),
            )
        name, sep, value = arg.partition("=")
        if not sep or name not in options:
            raise InvalidInput(
                f"omni-windmill-step: unknown argument {arg!r} "
                "(usage: [--inventory=DIR] [--ssh-key-variable=PATH] -- OMNI_ARG...)"
            )
        options[name] = value
    raise InvalidInput("omni-windmill-step: missing `--` before the omni arguments")


def resolve_inventory(given: str, env: Mapping[str, str]) -> str:
    """The step's inventory argument, else the worker's ``OMNI_INVENTORY``."""
    inventory = given or env.get("OMNI_INVENTORY", "")
    if not inventory:
        raise InvalidInput(
            "inventory: set the step's inventory argument or OMNI_INVENTORY on the worker"
        )
    return inventory


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: urllib would resend the Authorization header to the new place."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> None:
        return None


def variable_url(variable: str, env: Mapping[str, str]) -> str:
    """``BASE_INTERNAL_URL/api/w/WORKSPACE/variables/get_value/PATH``, checked.

    Raises InvalidInput for a path that is not a Windmill variable path or when the
    worker's variables are missing (not running on a Windmill worker).
    """
    if not _VARIABLE_PATH.fullmatch(variable) or ".." in variable:
        raise InvalidInput(
            f'ssh_key_variable: "{variable}" is not a Windmill variable path (u/... or f/...)'
        )
    base, workspace = env.get("BASE_INTERNAL_URL", ""), env.get("WM_WORKSPACE", "")
    if not (base and workspace and env.get("WM_TOKEN")):
        raise InvalidInput(
            "ssh_key_variable: not running on a Windmill worker "
            "(BASE_INTERNAL_URL, WM_TOKEN, WM_WORKSPACE unset)"
        )
    if urllib.parse.urlsplit(base).scheme not in {"http", "https"}:
        raise InvalidInput("BASE_INTERNAL_URL: must be an http:// or https:// URL")
    quoted_ws = urllib.parse.quote(workspace, safe="")
    quoted_path = urllib.parse.quote(variable, safe="/")
    return f"{base.rstrip('/')}/api/w/{quoted_ws}/variables/get_value/{quoted_path}"


def fetch_private_key(variable: str, env: Mapping[str, str]) -> str:
    """The value of secret variable ``variable``; it must be an SSH private key.

    The token travels only in the Authorization header; no proxy (the worker's
    ``BASE_INTERNAL_URL`` is internal) and no redirect is followed. Error messages name
    the variable and the HTTP status, never the value or the token.
    """
    url = variable_url(variable, env)
    request = urllib.request.Request(  # noqa: S310 (scheme checked in variable_url)
        url, headers={"Authorization": f"Bearer {env['WM_TOKEN']}"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())
    try:
        with opener.open(request, timeout=_FETCH_TIMEOUT_S) as response:
            body: bytes = response.read()
    except urllib.error.HTTPError as err:
        raise InvalidInput(
            f"ssh_key_variable: cannot read Windmill variable {variable} (HTTP {err.code})"
        ) from None
    except (OSError, http.client.HTTPException) as err:
        reason = getattr(err, "reason", err)
        raise InvalidInput(
            f"ssh_key_variable: cannot read Windmill variable {variable} ({reason})"
        ) from None
    try:
        key = json.loads(body)
    except ValueError:
        key = None
    if not isinstance(key, str) or _KEY_MARKER not in key:
        raise InvalidInput(
            f"ssh_key_variable: variable {variable} does not hold an SSH private key"
        )
    return key if key.endswith("\n") else key + "\n"


def write_private_key(home: Path, key: str) -> Path:
    """Write ``key`` to ``home/.ssh/omni_deploy``, mode 0600, refusing an existing file."""
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700, parents=True)
    path = ssh_dir / "omni_deploy"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)  # exactly 0600, whatever the worker's umask
        out.write(key)
    return path


def omni_command(env: Mapping[str, str]) -> list[str]:
    """``$OMNI_BIN`` if set, else omni from the interpreter running this module."""
    override = env.get("OMNI_BIN", "")
    return [override] if override else [sys.executable, "-m", "omni.cli"]


def run_omni(command: Sequence[str], env: Mapping[str, str]) -> tuple[int, bytes]:
    """Run omni; return its exit status (128+N for signal N) and its stdout."""
    try:
        done = subprocess.run(  # argv list, no shell
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            env=dict(env),
            check=False,
        )
    except OSError as err:
        raise InvalidInput(f"OMNI_BIN: cannot run {command[0]} ({err.strerror})") from None
    status = done.returncode if done.returncode >= 0 else 128 - done.returncode
    return status, done.stdout


def publish(envelope: bytes, workdir: Path, out: IO[bytes]) -> None:
    """Hand the envelope to Windmill: ``workdir/result.json`` and the last stdout line."""
    if not envelope.strip():
        return
    (workdir / "result.json").write_bytes(envelope)
    out.write(envelope if envelope.endswith(b"\n") else envelope + b"\n")
    out.flush()


def run_step(args: StepArgs, env: Mapping[str, str], workdir: Path, out: IO[bytes]) -> int:
    """Resolve, fetch the key into a private HOME, run omni, publish; return omni's status."""
    inventory = resolve_inventory(args.inventory, env)
    child_env = {name: value for name, value in env.items() if name != "WM_TOKEN"}
    work = Path(tempfile.mkdtemp(prefix="omni-step-"))  # 0700
    try:
        if args.ssh_key_variable not in {"", "none"}:
            key = fetch_private_key(args.ssh_key_variable, env)
            write_private_key(work / "home", key)
            child_env["HOME"] = str(work / "home")
        command = [*omni_command(env), f"--inventory={inventory}", "--json", *args.omni_args]
        status, envelope = run_omni(command, child_env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    publish(envelope, workdir, out)
    return status


def _terminate(signum: int, frame: FrameType | None) -> None:
    # Turn Windmill's cancel (SIGTERM) into SystemExit so `finally` removes the key;
    # subprocess.run kills omni on the way out.
    raise SystemExit(128 + signum)


def run(argv: Sequence[str]) -> int:
    """Run one step for ``argv`` in the current directory; return the exit status."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return run_step(parse_args(argv), os.environ, Path.cwd(), sys.stdout.buffer)
    except InvalidInput as err:
        sys.stdout.flush()
        sys.stderr.write(error_line(err.code, err.message) + "\n")
        sys.stderr.flush()
        return int(ExitCode.INVALID_INPUT)


def main() -> None:
    """Console script ``omni-windmill-step``."""
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
