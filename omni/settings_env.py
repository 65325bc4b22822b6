"""pydantic-settings' reading of the ``OMNI_*`` environment and ``.env``: the parsing and
validation behind :func:`omni.settings.load_settings`, imported only when there is something
to read."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from omni.settings import DEFAULTS, ENV_FILE


class EnvSettings(BaseSettings):
    """The fields of :class:`omni.settings.Settings`, with their defaults."""

    model_config = SettingsConfigDict(
        env_prefix="OMNI_", env_file=ENV_FILE, env_file_encoding="utf-8", extra="ignore"
    )

    inventory: Path = DEFAULTS.inventory
    # OMNI_JSON; the field is not named "json" because that shadows BaseModel.json.
    json_output: bool = Field(
        default=DEFAULTS.json_output, validation_alias=AliasChoices("OMNI_JSON", "json_output")
    )
    debug: bool = DEFAULTS.debug
    color: bool | None = DEFAULTS.color
    lock_lease_seconds: float = Field(
        default=DEFAULTS.lock_lease_seconds, ge=1, allow_inf_nan=False
    )
