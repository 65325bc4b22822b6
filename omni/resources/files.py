"""A file on the host whose whole content omni owns (env files, configs)."""

from __future__ import annotations

import difflib
import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING

from omni.engine.step import FieldChange, Step, Verb, noop

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
class ManagedFile:
    """Converges one file to ``content``.

    ``display`` renders content for people (secrets masked); diffs are built from it, never
    from the real bytes. Apply writes atomically with ``mode`` and creates the parent
    directory (mode 0700) if missing. Idempotent.
    """

    key: str
    path: str
    content: bytes
    mode: int
    display: str  # the content as shown to people, secrets masked
    owner: str | None = None  # "uid:gid"; None leaves the writing user as owner

    def observe(self, session: HostSession) -> tuple[bytes | None, str | None]:
        content = session.transport.read_file(self.path)
        if content is None or self.owner is None:
            return content, None
        stat = session.transport.run(["stat", "-c", "%u:%g", self.path], check=False)
        return content, stat.text().strip() or None

    def plan(self, state: tuple[bytes | None, str | None]) -> list[Step]:
        current, owner = state
        if current == self.content:
            if self.owner is not None and owner != self.owner:
                return [
                    Step(
                        self.key,
                        Verb.UPDATE,
                        f"chown {self.owner} {self.path}",
                        (FieldChange("owner", owner, self.owner),),
                    )
                ]
            return [noop(self.key, f"{self.path} up to date")]
        before = None if current is None else _mask_like(current, self.content, self.display)
        verb = Verb.CREATE if current is None else Verb.UPDATE
        return [
            Step(
                resource=self.key,
                verb=verb,
                summary=f"{verb.value} {self.path} (mode {self.mode:04o})",
                diff=unified_diff(self.path, before, self.display),
            )
        ]

    def apply(self, session: HostSession, step: Step) -> None:
        directory = posixpath.dirname(self.path)
        session.transport.run(["mkdir", "-p", "-m", PRIVATE_DIR_MODE, directory])
        session.transport.write_file(self.path, self.content, mode=self.mode)
        if self.owner is not None:
            session.transport.run(["chown", self.owner, self.path])


def _mask_like(current: bytes, desired: bytes, desired_display: str) -> str:
    """Show the current file with the same masking as the desired one.

    Lines identical to a desired line are shown as that line's masked form; other lines
    are masked wholesale after the first '=' (env/config style), since a line we did not
    write may still hold a secret.
    """
    masked_by_line = dict(
        zip(
            desired.decode("utf-8", "replace").splitlines(),
            desired_display.splitlines(),
            strict=False,
        )
    )
    out = []
    for line in current.decode("utf-8", "replace").splitlines(keepends=True):
        bare = line.rstrip("\n")
        if bare in masked_by_line:
            out.append(masked_by_line[bare] + "\n")
        elif "=" in bare and not bare.lstrip().startswith("#"):
            out.append(bare.split("=", 1)[0] + "=********\n")
        elif bare.strip().startswith("requirepass"):
            out.append("requirepass ********\n")
        else:
            out.append(line)
    return "".join(out)
