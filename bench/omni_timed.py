"""``python bench/omni_timed.py ARGS...`` = ``omni ARGS...``, writing a timeline of a
``tenant create`` into the file ``BENCH_TIMELINE`` (JSON lines ``{"t": epoch seconds,
"event": ..., "step": ...}``): start, imports done, the host session opened (SSH), observe +
plan, apply and each step (from the progress reporter, so the health gate too), verify and
the health gate. The create-breakdown bench (``bench/create_breakdown.py``) reads it. The
patches only record, with ``time.time()`` so the parent can line them up with its own clock;
omni runs unchanged.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

_started = time.time()


def _recorder(path: str) -> Callable[..., None]:
    out = open(path, "a", buffering=1)  # noqa: SIM115 - open for the process's lifetime

    def record(event: str, **extra: Any) -> None:
        out.write(json.dumps({"t": time.time(), "event": event, **extra}) + "\n")

    return record


def _wrap(module: Any, name: str, record: Callable[..., None], start: str, end: str) -> None:
    original = getattr(module, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        record(start)
        try:
            return original(*args, **kwargs)
        finally:
            record(end)

    setattr(module, name, wrapped)


def _install(path: str) -> None:
    record = _recorder(path)
    record("main_start", at=_started)
    import omni.cli.app  # noqa: F401 - timed: what `omni` imports before parsing arguments

    record("cli_imported")
    import omni.cli.progress as progress
    import omni.usecases.tenant_create as create  # imported lazily by omni itself

    record("imported")
    _wrap(create, "open_host_session", record, "session_start", "session_end")
    _wrap(create, "plan_tenant", record, "plan_start", "plan_end")
    _wrap(create, "apply_plan", record, "apply_start", "apply_end")
    _wrap(create, "verify", record, "verify_start", "verify_end")
    _wrap(create, "health_gate", record, "health_start", "health_end")
    console = progress.ConsoleProgress
    started, finished = console.step_started, console.step_finished

    def step_started(self: Any, step: Any) -> None:
        record("step_start", step=step.resource)
        started(self, step)

    def step_finished(self: Any, step: Any, error: str | None) -> None:
        record("step_end", step=step.resource, failed=error is not None)
        finished(self, step, error)

    console.step_started = step_started  # type: ignore[method-assign]
    console.step_finished = step_finished  # type: ignore[method-assign]
    _count_remote_processes(record)


def _count_remote_processes(record: Callable[..., None]) -> None:
    """Each command omni runs on the host (an SSH exec channel: a process there), with its
    program name (argv[0] only: never an argument, which may hold a secret) and, for
    ``run``, its duration; ``open_process`` streams (locks, docker dial-stdio, socat) are
    long-lived: counted, not timed. And each host lock: its kind and the time to take it
    (an ``open_process`` running ``flock``, plus any wait for another holder)."""
    from omni.transport.ssh import SSHTransport

    run, open_process = SSHTransport.run, SSHTransport.open_process

    def timed_run(self: Any, argv: Any, **kwargs: Any) -> Any:
        started = time.time()
        try:
            return run(self, argv, **kwargs)
        finally:
            record("exec", program=_program(argv), seconds=time.time() - started)

    def counted_open_process(self: Any, argv: Any) -> Any:
        record("process", program=_program(argv))
        return open_process(self, argv)

    SSHTransport.run = timed_run  # type: ignore[method-assign]
    SSHTransport.open_process = counted_open_process  # type: ignore[method-assign]

    from omni.hosts.session import HostSession

    lock = HostSession.lock

    @contextlib.contextmanager
    def timed_lock(self: Any, name: str, *args: Any, **kwargs: Any) -> Iterator[None]:
        started = time.time()
        with lock(self, name, *args, **kwargs):
            kind = "tenant" if name.startswith("tenant-") else name  # no slug in the record
            record("lock", name=kind, seconds=time.time() - started)
            yield

    HostSession.lock = timed_lock  # type: ignore[assignment,method-assign]


def _program(argv: Any) -> str:
    words = list(argv)
    if words[:1] == ["docker"] or (words and words[0].endswith("/docker")):
        return " ".join(words[-2:]) if words[-2:] == ["system", "dial-stdio"] else "docker"
    if len(words) > 3 and words[0] in ("sh", "bash") and words[1] == "-c":
        return f"{words[0]} -c ... {words[3]}"  # the script's $0: omni-lock, omni-audit
    return words[0].rsplit("/", 1)[-1] if words else "?"


def main() -> None:
    path = os.environ.get("BENCH_TIMELINE")
    if path:
        _install(path)
    from omni.cli.app import main as omni_main

    sys.argv[0] = "omni"
    omni_main()


if __name__ == "__main__":
    main()
