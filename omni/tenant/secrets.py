"""Per-tenant secrets: generated once, kept on the host (0600), reused on every run."""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class TenantSecrets:
    db_password: str
    redis_password: str
    jwt_secret: str
    cookie_secret: str

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
        return [getattr(self, f.name) for f in fields(self)]

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, raw: bytes) -> TenantSecrets:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("tenant secrets file is not a JSON object")
        return cls(**{f.name: str(data[f.name]) for f in fields(cls)})
