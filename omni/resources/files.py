"""A file on the host whose whole content omni owns (env files, configs)."""

from __future__ import annotations

import difflib
import posixpath
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from omni.engine.step import FieldChange, Step, Verb, noop
from omni.redact import MASK

if TYPE_CHECKING:
    from omni.hosts.session import HostSession

# Directories holding secrets are private to their owner.
PRIVATE_DIR_MODE = "700"


def unified_diff(path: str, before: str | None, after: str) -> str:
    return "".join(
        difflib.unified_diff(
            [] if before is None else before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile="/dev/null" if before is None else f"a{path}",
            tofile=f"b{path}",
        )
    )


@dataclass(frozen=True)
class FileState:
    content: bytes | None  # None: the file does not exist
    mode: str | None = None  # octal, as `stat -c %a` prints it
    owner: str | None = None  # "uid:gid"


@dataclass(frozen=True)
class ManagedFile:
    """Converges one file to ``content``.

    ``display`` renders content for people (secrets masked); diffs are built from it, never
    from the real bytes. Apply writes atomically with ``mode`` and creates the parent
    directory (mode 0700) if missing. Idempotent.
    """

    key: str
    path: str
    content: bytes = field(repr=False)
    mode: int
    display: str  # the content as shown to people, secrets masked
    owner: str | None = None  # "uid:gid"; None leaves the writing user as owner

    def observe(self, session: HostSession) -> FileState:
        content = session.transport.read_file(self.path)
        found = None if content is None else session.transport.stat(self.path)
        if content is None or found is None:
            return FileState(None)
        return FileState(content, f"{found.mode:o}", f"{found.uid}:{found.gid}")

    def plan(self, state: FileState) -> list[Step]:
        if state.content != self.content:
            return [self._write_step(state.content)]
        changes = []
        if state.mode != f"{self.mode:o}":
            changes.append(FieldChange("mode", state.mode, f"{self.mode:o}"))
        if self.owner is not None and state.owner != self.owner:
            changes.append(FieldChange("owner", state.owner, self.owner))
        if not changes:
            return [noop(self.key, f"{self.path} up to date")]
        what = ", ".join(f"{c.field} {c.after}" for c in changes)
        return [Step(self.key, Verb.UPDATE, f"set {what} on {self.path}", tuple(changes))]

    def _write_step(self, current: bytes | None) -> Step:
        before = None if current is None else _mask_like(current, self.content, self.display)
        verb = Verb.CREATE if current is None else Verb.UPDATE
        return Step(
            resource=self.key,
            verb=verb,
            summary=f"{verb.value} {self.path} (mode {self.mode:04o})",
            diff=unified_diff(self.path, before, self.display),
        )

    def apply(self, session: HostSession, step: Step) -> None:
        transport = session.transport
        transport.run(["mkdir", "-p", "-m", PRIVATE_DIR_MODE, posixpath.dirname(self.path)])
        if transport.read_file(self.path) != self.content:
            transport.write_file(self.path, self.content, mode=self.mode)
        transport.run(["chmod", f"{self.mode:o}", self.path])
        if self.owner is not None:
            transport.run(["chown", self.owner, self.path])


@dataclass(frozen=True)
class PrivateDirectory:
    """A directory only root may enter (0700): e.g. the tenant's gateway sockets."""

    key: str
    path: str

    def observe(self, session: HostSession) -> str | None:
        found = session.transport.stat(self.path)
        return None if found is None else f"{found.mode:o}"

    def plan(self, mode: str | None) -> list[Step]:
        if mode is None:
            return [Step(self.key, Verb.CREATE, f"create directory {self.path} (mode 0700)",
                         (FieldChange("directory", None, self.path),))]
        if mode != PRIVATE_DIR_MODE:
            return [Step(self.key, Verb.UPDATE, f"set mode 0700 on {self.path}",
                         (FieldChange("mode", mode, "700"),))]
        return [noop(self.key, f"{self.path} exists, mode 0700")]

    def apply(self, session: HostSession, step: Step) -> None:
        session.transport.run(["mkdir", "-p", "-m", PRIVATE_DIR_MODE, self.path])
        session.transport.run(["chmod", PRIVATE_DIR_MODE, self.path])


def _mask_like(current: bytes, desired: bytes, desired_display: str) -> str:
    """Show the current file with the same masking as the desired one.

    A line identical to a desired line is shown as that line's masked form. Any other line
    may hold a secret (a hand edit, an old value, another layout), so only its first word
    (up to ``=``, ``:`` or a space) is kept and the rest is masked; comments are masked too.
    """
    masked_by_line = dict(
        zip(
            desired.decode("utf-8", "replace").splitlines(),
            desired_display.splitlines(),
            strict=False,
        )
    )
    out = []
    for line in current.decode("utf-8", "replace").splitlines():
        if line in masked_by_line:
            out.append(masked_by_line[line])
        elif not line.strip():
            out.append(line)
        else:
            out.append(_first_word(line) + MASK)
    return "".join(f"{line}\n" for line in out)


_WORD = re.compile(r"^\s*[^\s=:#]*[=:\s]?\s*")


def _first_word(line: str) -> str:
    match = _WORD.match(line)
    return match.group(0) if match else ""
