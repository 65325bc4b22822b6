"""Process-wide settings: ``OMNI_*`` environment variables and an optional ``.env`` file.

Command-line flags win over these; these win over the defaults. Read once per CLI run with
:func:`load_settings` and passed down (no module-level settings object).

The parsing and validation are pydantic-settings' (:mod:`omni.settings_env`); this module
stays free of pydantic so that a run with nothing to read (``omni --help``) does not import
it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Every environment variable the settings read, lower-cased (pydantic-settings matches them
# case-insensitively). tests/test_settings.py derives the same set from omni.settings_env.
ENV_NAMES = frozenset({
    "omni_inventory", "omni_json", "json_output", "omni_debug", "omni_color",
    "omni_lock_lease_seconds",
})
ENV_FILE = ".env"


@dataclass(frozen=True)
class Settings:
    """``OMNI_INVENTORY``, ``OMNI_JSON``, ``OMNI_DEBUG``, ``OMNI_COLOR`` (and ``NO_COLOR``),
    ``OMNI_LOCK_LEASE_SECONDS``."""

    inventory: Path = Path("inventory")
    json_output: bool = False
    debug: bool = False
    # None: colour when stdout/stderr is a terminal. NO_COLOR (any value) forces it off.
    color: bool | None = None
    # OMNI_LOCK_LEASE_SECONDS: a tenant/host lock whose holder stops heartbeating (frozen,
    # or cut off with its TCP connection half-open) is released after this long.
    lock_lease_seconds: float = 30.0

    @property
    def use_color(self) -> bool | None:
        """False when colour is off by request; None lets rich decide (TTY detection)."""
        if os.environ.get("NO_COLOR") or self.color is False:
            return False
        return True if self.color else None


DEFAULTS = Settings()


def load_settings() -> Settings:
    """The settings from the environment and ``.env`` (raises pydantic's ``ValidationError``
    for a bad value)."""
    if not any(name.lower() in ENV_NAMES for name in os.environ) and not Path(ENV_FILE).exists():
        return DEFAULTS  # nothing to read or validate: skip importing pydantic-settings
    from omni.settings_env import EnvSettings

    return Settings(**EnvSettings().model_dump())
