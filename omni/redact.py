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


# An option whose name mentions one of these carries a secret value (``--opt VALUE`` or
# ``--opt=VALUE``). Broad on purpose: masking an innocent value costs little.
_SECRET_OPTION_WORDS = ("password", "passwd", "secret", "token", "credential", "apikey",
                        "api-key", "api_key", "private-key", "private_key")


def _is_secret_option(arg: str) -> bool:
    name = arg.split("=", 1)[0].lower()
    return name.startswith("-") and any(word in name for word in _SECRET_OPTION_WORDS)


def mask_argv(argv: Iterable[str]) -> list[str]:
    """``argv`` with the value of every secret-looking option masked.

    ``--password=x`` -> ``--password=********``; ``--token x`` -> ``--token ********`` (the
    next argument is masked, unless it is itself an option). Pure.
    """
    masked: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next and not arg.startswith("-"):
            masked.append(MASK)
            hide_next = False
            continue
        hide_next = False
        if _is_secret_option(arg):
            if "=" in arg:
                masked.append(arg.split("=", 1)[0] + "=" + MASK)
                continue
            hide_next = True
        masked.append(arg)
    return masked
