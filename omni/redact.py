"""Masking secret values out of any text that may reach a person or a log."""

from __future__ import annotations

from collections.abc import Iterable

MASK = "********"


class Redactor:
    """Replaces every known secret value with a fixed mask.

    Secrets are registered as they are generated or read; every string leaving omni
    (steps, diffs, error messages, JSON) can be passed through :meth:`text`.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        # Very short values would mask innocent text; generated secrets are long.
        self._secrets.update(s for s in secrets if len(s) >= 8)

    def text(self, value: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            value = value.replace(secret, MASK)
        return value

    def __contains__(self, value: object) -> bool:
        return value in self._secrets
