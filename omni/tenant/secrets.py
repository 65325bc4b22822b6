"""Per-tenant secrets: generated once, kept on the host (0600), reused on every run.

The four infrastructure secrets are generated with the tenant. The admin fields are
optional and owned by the ``medusa.admin`` resource (``omni.resources.admin_user``): the
last invite issued for the tenant's admin (its token, a JWT, and when it expires) and,
only when inviting was impossible, a generated admin password. A secrets file written
before these fields existed loads unchanged, and unset fields are not written, so such a
file stays byte-identical.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from dataclasses import dataclass, fields
from typing import Any

from omni.redact import MASK

# The fields the ``medusa.admin`` resource owns; the ``tenant.secrets`` resource keeps them.
ADMIN_FIELDS = ("admin_invite_token", "admin_invite_expires_at", "admin_password")
# Not secret (a timestamp): never registered with the redactor.
_PUBLIC_FIELDS = frozenset({"admin_invite_expires_at"})


@dataclass(frozen=True)
class TenantSecrets:
    db_password: str
    redis_password: str
    jwt_secret: str
    cookie_secret: str
    admin_invite_token: str | None = None
    admin_invite_expires_at: str | None = None  # ISO 8601, UTC
    admin_password: str | None = None

    def __repr__(self) -> str:  # never let a secret reach a log through repr()
        return "TenantSecrets(********)"

    __str__ = __repr__

    @classmethod
    def generate(cls) -> TenantSecrets:
        # URL-safe alphabet: values go into DATABASE_URL / REDIS_URL unescaped.
        return cls(
            db_password=secrets.token_urlsafe(32),
            redis_password=secrets.token_urlsafe(32),
            jwt_secret=secrets.token_urlsafe(48),
            cookie_secret=secrets.token_urlsafe(48),
        )

    def values(self) -> list[str]:
        """Every secret value that is set (for the redactor)."""
        found = (getattr(self, f.name) for f in fields(self) if f.name not in _PUBLIC_FIELDS)
        return [value for value in found if value is not None]

    def admin_fields(self) -> dict[str, str | None]:
        return {name: getattr(self, name) for name in ADMIN_FIELDS}

    def with_admin(self, **admin: str | None) -> TenantSecrets:
        """A copy with admin fields replaced (only names in :data:`ADMIN_FIELDS`)."""
        unknown = set(admin) - set(ADMIN_FIELDS)
        if unknown:
            raise ValueError(f"not admin fields: {sorted(unknown)}")
        merged = {**self.admin_fields(), **admin}
        return TenantSecrets(
            db_password=self.db_password,
            redis_password=self.redis_password,
            jwt_secret=self.jwt_secret,
            cookie_secret=self.cookie_secret,
            admin_invite_token=merged["admin_invite_token"],
            admin_invite_expires_at=merged["admin_invite_expires_at"],
            admin_password=merged["admin_password"],
        )

    def masked(self) -> TenantSecrets:
        """The same shape with every set value (timestamps aside) shown as ``********``."""
        return TenantSecrets(
            **{
                f.name: value if value is None or f.name in _PUBLIC_FIELDS else MASK
                for f in fields(self)
                for value in [getattr(self, f.name)]
            }
        )

    def to_json(self) -> bytes:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data = {k: v for k, v in data.items() if v is not None}
        return json.dumps(data, indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, raw: bytes) -> TenantSecrets:
        """Parse a secrets file. Raises ``ValueError``/``KeyError`` when a required field
        is missing or the file is not a JSON object; unknown keys are ignored."""
        data: Any = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("tenant secrets file is not a JSON object")
        values: dict[str, str | None] = {}
        for f in fields(cls):
            if f.name in data and data[f.name] is not None:
                values[f.name] = str(data[f.name])
            elif f.default is dataclasses.MISSING:
                raise KeyError(f.name)
        return cls(**values)  # type: ignore[arg-type]
