"""Process-wide settings: ``OMNI_*`` environment variables and an optional ``.env`` file.

Command-line flags win over these; these win over the defaults. Read once per CLI run and
passed down (no module-level settings object).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """``OMNI_INVENTORY``, ``OMNI_JSON``, ``OMNI_DEBUG``, ``OMNI_COLOR`` (and ``NO_COLOR``),
    ``OMNI_LOCK_LEASE_SECONDS``."""

    model_config = SettingsConfigDict(
        env_prefix="OMNI_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    inventory: Path = Path("inventory")
    # OMNI_JSON; the field is not named "json" because that shadows BaseModel.json.
    json_output: bool = Field(
        default=False, validation_alias=AliasChoices("OMNI_JSON", "json_output")
    )
    debug: bool = False
    # None: colour when stdout/stderr is a terminal. NO_COLOR (any value) forces it off.
    color: bool | None = None
    # OMNI_LOCK_LEASE_SECONDS: a tenant/host lock whose holder stops heartbeating (frozen,
    # or cut off with its TCP connection half-open) is released after this long.
    lock_lease_seconds: float = Field(default=30.0, ge=1, allow_inf_nan=False)

    @property
    def use_color(self) -> bool | None:
        """False when colour is off by request; None lets rich decide (TTY detection)."""
        if os.environ.get("NO_COLOR") or self.color is False:
            return False
        return True if self.color else None
