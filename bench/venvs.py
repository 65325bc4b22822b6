"""The benches' own virtualenvs (tools omni does not depend on: ansible-core, certbot...)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path


def ensure_venv(root: Path, packages: Sequence[str], say: Callable[[str], None]) -> Path:
    """``root`` holding ``packages`` from PyPI, installed once (again when the list changes)."""
    python = root / "bin" / "python"
    marker = root / ".installed"
    wanted = "\n".join(packages)
    if marker.is_file() and marker.read_text() == wanted:
        return root
    say(f"installing {', '.join(packages)} into {root}")
    if not python.exists():
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(root)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)
    marker.write_text(wanted)
    return root
