"""Every rule in omni/validation.py, accepted and rejected values, thinking as an attacker.

Names flow into SQL identifiers, shell argv, nginx config, DNS and Docker: each rejected
value below is one that could break out of one of those contexts or confuse a reader.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from omni import validation as v

CYRILLIC_A = "\u0430"  # looks like Latin "a"

SLUG_OK = ["ab", "acme", "acme-outdoor", "shop2", "a1-b2-c3", "a" * 40]
SLUG_BAD = [
    "", "a", "A", "Acme", "acme_outdoor", "-acme", "acme-", "acme--x", "1acme", "a" * 41,
    "acme;drop", "acme'--", 'acme"', "acme$(id)", "acme`id`", "acme\n", "acme\nx", "ac me",
    "{{acme}}", "acme.x", "acme/x", f"{CYRILLIC_A}cme", "acme\x00", "*", "~acme",
]

HOST_OK = ["dev", "netcup", "d", "host-2", "a" * 32]
HOST_BAD = ["", "Dev", "2dev", "-dev", "dev_1", "dev;id", "dev$(id)", "a" * 33, "dev\n",
            f"d{CYRILLIC_A}v", "dev.x", "../dev"]

LABEL_63 = "a" * 63
DOMAIN_OK = [
    "example.com", "shop.example.com", "a.b", "xn--80ak6aa92e.com", "shop-1.example.co.uk",
    f"{LABEL_63}.example.com", "1shop.example.com", "a-b.example.com",
    ".".join(["a" * 61] * 4),  # 247 chars
]
DOMAIN_BAD = [
    "", "localhost", "example", "Example.com", "SHOP.EXAMPLE.COM", "example.com.",
    f"{'a' * 64}.example.com", "*.example.com", "_dmarc.example.com", "~^.*$",
    "~^(www\\.)?example\\.com$", "_", "example..com", ".example.com", "-shop.example.com",
    "shop-.example.com", "shop.example.com;", "shop.example.com; location / {}",
    "shop.example.com\n", "shop.example.com\nserver_name evil.com", "ex ample.com",
    "$(id).example.com", "`id`.example.com", "{{x}}.example.com", "shop'.example.com",
    f"sh{CYRILLIC_A}p.example.com", "bücher.example", "127.0.0.1", "10.0.0.1",
    "::1", "[::1]", "example.com:443", "example.com/path", "user@example.com",
    ".".join(["a" * 62] * 4) + ".com",  # 255 chars: over the 253 limit
]

DIGEST = "sha256:" + "a" * 64
IMAGE_OK = [
    "medusa", "medusa:2.21.2", "omni-lab/medusa:v1", "registry.local:5000/org/app:tag",
    f"app@{DIGEST}", f"app:1.0@{DIGEST}", "library/redis:7-bookworm", "a.b/c_d/e-f:Tag_1.0",
]
IMAGE_BAD = [
    "", "Medusa", "medusa:", "medusa:-tag", "--privileged", "-app", "medusa:tag;rm -rf /",
    "medusa:$(id)", "medusa:`id`", "medusa latest", "medusa:tag\n", "app@sha256:short",
    "medusa:" + "t" * 129, "{{image}}", "app//x", "/app", "app:tag:tag", "ap\u0440p",
]

ENV_KEY_OK = ["A", "_X", "X1", "MEDUSA_FF_X", "A" * 128]
ENV_KEY_BAD = ["", "1X", "lower", "A-B", "A B", "A=B", "A;B", "A$", "A\n", "A" * 129,
               f"{CYRILLIC_A.upper()}B"]

ENV_VALUE_OK = ["", "plain", "with spaces", "$(id)", "`id`", "{{ x }}", "a=b;c", "'\""]
ENV_VALUE_BAD = ["a\nb", "a\rb", "a\x00b", "\n", "line\r\n"]

ADDRESS_OK = ["127.0.0.1", "203.0.113.10", "::1", "2001:db8::1", "localhost",
              "db.example.com"]
ADDRESS_BAD = ["", "-oProxyCommand=id", "host;id", "$(id)", "host name", "Host.Example.com",
               "host\n", "host.example.com.", "999.1.1.1", "*.example.com", "http://x"]


def _cases(check: Callable[[str], str], ok: list[str], bad: list[str]) -> list[object]:
    return [pytest.param(check, value, True, id=f"{check.__name__}-ok-{value!r}")
            for value in ok] + [
        pytest.param(check, value, False, id=f"{check.__name__}-bad-{value!r}") for value in bad
    ]


TABLE = (
    _cases(v.check_slug, SLUG_OK, SLUG_BAD)
    + _cases(v.check_host_name, HOST_OK, HOST_BAD)
    + _cases(v.check_domain, DOMAIN_OK, DOMAIN_BAD)
    + _cases(v.check_image, IMAGE_OK, IMAGE_BAD)
    + _cases(v.check_env_key, ENV_KEY_OK, ENV_KEY_BAD)
    + _cases(v.check_env_value, ENV_VALUE_OK, ENV_VALUE_BAD)
    + _cases(v.check_address, ADDRESS_OK, ADDRESS_BAD)
)


@pytest.mark.parametrize(("check", "value", "accepted"), TABLE)
def test_rule_accepts_or_rejects_with_a_one_line_reason(
    check: Callable[[str], str], value: str, accepted: bool
) -> None:
    if accepted:
        assert check(value) == value
        return
    with pytest.raises(ValueError, match=r"must") as info:
        check(value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("key", sorted(v.RESERVED_ENV_KEYS))
def test_reserved_env_keys_cannot_be_overridden_by_a_tenant(key: str) -> None:
    with pytest.raises(ValueError, match="set by omni itself"):
        v.check_env_key_not_reserved(key)


@pytest.mark.parametrize("key", ["MEDUSA_LOG_LEVEL", "STRIPE_API_KEY", "_X"])
def test_unreserved_env_keys_are_allowed(key: str) -> None:
    assert v.check_env_key_not_reserved(key) == key


def test_env_key_not_reserved_still_applies_the_key_syntax() -> None:
    with pytest.raises(ValueError, match="uppercase"):
        v.check_env_key_not_reserved("lower")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("Shop.example.com", "lowercase"),
        (f"sh{CYRILLIC_A}p.example.com", "ASCII"),
        ("example.com.", "must not end with a dot"),
        ("1.2.3.4", "not an IP address"),
        ("*.example.com", "no wildcard"),
        ("a." * 127 + "com", "at most 253"),
    ],
)
def test_domain_rejections_name_the_specific_rule(value: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        v.check_domain(value)


def test_the_longest_slug_fits_a_postgres_identifier_with_room_for_suffixes() -> None:
    # Roles/databases are derived from slugs; 63 bytes is Postgres's silent truncation limit.
    longest = "a" * 40
    assert v.check_slug(longest)
    assert len(longest.encode()) + len("_app_ro") < 63
