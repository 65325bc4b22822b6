"""Rules for names that reach SQL, shell, nginx config, DNS and Docker.

Pure functions; each raises ``ValueError`` with a message stating the rule, which the
pydantic models and the CLI turn into one line naming the field.
"""

from __future__ import annotations

import ipaddress
import re

SLUG_RULE = "lowercase letters, digits and single hyphens; starts with a letter; 2-40 chars"
_SLUG = re.compile(r"^[a-z](?:[a-z0-9]|-(?=[a-z0-9])){1,39}$")

# One DNS label: LDH, no leading/trailing hyphen, at most 63 bytes.
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
DOMAIN_RULE = (
    "a lowercase ASCII hostname: dot-separated labels of a-z, 0-9 and inner hyphens, "
    "each at most 63 chars, at least two labels, no trailing dot, no wildcard"
)

# Docker image reference: [registry[:port]/]path[:tag][@digest], conservative charset.
_IMAGE = re.compile(
    r"^(?:[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::[0-9]{1,5})?/)?"
    r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
IMAGE_RULE = "a Docker image reference like name:tag (lowercase path, [A-Za-z0-9_.-] tag)"

_ENV_KEY = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")
ENV_KEY_RULE = "uppercase letters, digits and underscores, not starting with a digit"
# Conservative on purpose: the address reaches Medusa's CLI (argv) and its admin invite.
_EMAIL = re.compile(r"^[a-z0-9._%+-]{1,64}@[a-z0-9.-]{1,253}$")
EMAIL_RULE = (
    "a lowercase e-mail address: local part of a-z, 0-9 and ._%+-, '@', a hostname domain"
)
HOST_NAME_RULE = "lowercase letters, digits and hyphens; starts with a letter; 1-32 chars"
_HOST_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")


def check_slug(value: str) -> str:
    if not _SLUG.fullmatch(value):
        raise ValueError(f"must be {SLUG_RULE}")
    return value


def check_host_name(value: str) -> str:
    if not _HOST_NAME.fullmatch(value):
        raise ValueError(f"must be {HOST_NAME_RULE}")
    return value


def check_domain(value: str) -> str:
    if not value.isascii():
        raise ValueError(f"must be ASCII (use the punycode xn-- form); rule: {DOMAIN_RULE}")
    if value != value.lower():
        raise ValueError(f"must be lowercase; rule: {DOMAIN_RULE}")
    if value.endswith("."):
        raise ValueError(f"must not end with a dot; rule: {DOMAIN_RULE}")
    if len(value) > 253:
        raise ValueError("must be at most 253 characters")
    labels = value.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"must be {DOMAIN_RULE}")
    # URL parsers read a last label of digits or 0x-hex as IPv4 (WHATWG host parsing).
    if labels[-1].isdigit() or re.fullmatch(r"0x[0-9a-f]*", labels[-1]):
        raise ValueError("must be a hostname, not an IP address")
    return value


def check_image(value: str) -> str:
    if len(value) > 255 or not _IMAGE.fullmatch(value):
        raise ValueError(f"must be {IMAGE_RULE}")
    return value


def check_env_key(value: str) -> str:
    if not _ENV_KEY.fullmatch(value):
        raise ValueError(f"must be {ENV_KEY_RULE}")
    return value


# Keys omni derives itself (omni/tenant/environment.py); a tenant's env may not set them.
RESERVED_ENV_KEYS = frozenset(
    {
        "DATABASE_URL",
        "REDIS_URL",
        "JWT_SECRET",
        "COOKIE_SECRET",
        "PORT",
        "HOST",
        "MEDUSA_BACKEND_URL",
        "NODE_ENV",
        "STORE_CORS",
        "ADMIN_CORS",
        "AUTH_CORS",
    }
)


def check_env_key_not_reserved(value: str) -> str:
    check_env_key(value)
    if value in RESERVED_ENV_KEYS:
        raise ValueError("is set by omni itself and cannot be overridden")
    return value


def check_env_value(value: str) -> str:
    if any(ch in value for ch in "\n\r\0"):
        raise ValueError("must be one line (no newline, carriage return or NUL)")
    return value


def check_address(value: str) -> str:
    """An IP address or a hostname (for SSH and Postgres endpoints)."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        try:
            check_domain(value)
        except ValueError:
            if value != "localhost":
                raise ValueError("must be an IP address or a hostname") from None
    return value


def check_loopback(value: str) -> str:
    """A loopback IP address (127.0.0.0/8 or ::1): nothing of a tenant's may listen on an
    address another machine can reach."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise ValueError("must be a loopback IP address (127.0.0.0/8 or ::1)") from None
    if not address.is_loopback:
        raise ValueError("must be a loopback IP address (127.0.0.0/8 or ::1), "
                         "so only nginx faces the network")
    return value


def check_email(value: str) -> str:
    """An admin e-mail address; its domain must obey :func:`check_domain`."""
    if not _EMAIL.fullmatch(value) or value.startswith((".", "-")):
        raise ValueError(f"must be {EMAIL_RULE}")
    try:
        check_domain(value.rsplit("@", 1)[1])
    except ValueError:
        raise ValueError(f"must be {EMAIL_RULE}") from None
    return value
