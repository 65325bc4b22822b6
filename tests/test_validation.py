"""Every rule in omni/validation.py, accepted and rejected values, thinking as an attacker.

Names flow into SQL identifiers, shell argv, nginx config, DNS and Docker: each rejected
value below is one that could break out of one of those contexts or confuse a reader.
"""

from __future__ import annotations

import re
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
    cases: list[object] = [
        pytest.param(check, value, True, id=f"{check.__name__}-ok-{value!r}") for value in ok
    ]
    return cases + [
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


# --- Boundaries, exact messages and independent lists (mutation-tested: `make mutation`) ---

DOMAIN_253 = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
DOMAIN_254 = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 62])


def test_domain_length_boundary_is_253_characters() -> None:
    assert (len(DOMAIN_253), len(DOMAIN_254)) == (253, 254)
    assert v.check_domain(DOMAIN_253) == DOMAIN_253
    with pytest.raises(ValueError, match=r"^must be at most 253 characters$"):
        v.check_domain(DOMAIN_254)


def test_image_length_boundary_is_255_characters() -> None:
    assert v.check_image("a" * 255) == "a" * 255
    with pytest.raises(ValueError, match="must be a Docker image reference"):
        v.check_image("a" * 256)


# A name whose last label is all digits reads as an IPv4 address to resolvers and browsers,
# whatever the other labels look like; digits elsewhere are fine.
IP_LIKE = ["1.2.3.4", "127.1", "shop.123", "a.b.255", "example.1", "shop.example.0",
           "a-b.c.4294967295"]
NOT_IP_LIKE = ["a.1.com", "1.example.com", "123.example.com", "1a.example.com", "shop.1a",
               "a.b.c1"]


@pytest.mark.parametrize("value", IP_LIKE)
def test_ip_like_names_are_refused_as_domains(value: str) -> None:
    with pytest.raises(ValueError, match=r"^must be a hostname, not an IP address$"):
        v.check_domain(value)


@pytest.mark.parametrize("value", NOT_IP_LIKE)
def test_digits_outside_the_last_label_are_a_hostname(value: str) -> None:
    assert v.check_domain(value) == value


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (v.check_domain, "bücher.example",
         f"must be ASCII (use the punycode xn-- form); rule: {v.DOMAIN_RULE}"),
        (v.check_domain, "Shop.example.com", f"must be lowercase; rule: {v.DOMAIN_RULE}"),
        (v.check_domain, "shop.example.com.", f"must not end with a dot; rule: {v.DOMAIN_RULE}"),
        (v.check_domain, "example", f"must be {v.DOMAIN_RULE}"),
        (v.check_domain, "a..b", f"must be {v.DOMAIN_RULE}"),
        (v.check_domain, "10.0.0.1", "must be a hostname, not an IP address"),
        (v.check_slug, "A", f"must be {v.SLUG_RULE}"),
        (v.check_host_name, "A", f"must be {v.HOST_NAME_RULE}"),
        (v.check_image, "A", f"must be {v.IMAGE_RULE}"),
        (v.check_env_key, "a", f"must be {v.ENV_KEY_RULE}"),
        (v.check_env_value, "a\nb", "must be one line (no newline, carriage return or NUL)"),
        (v.check_env_value, "a\x00", "must be one line (no newline, carriage return or NUL)"),
        (v.check_address, "host;id", "must be an IP address or a hostname"),
        (v.check_address, "10.0.0.256", "must be an IP address or a hostname"),
        (v.check_email, "A@example.com", f"must be {v.EMAIL_RULE}"),
        (v.check_email, "a@localhost", f"must be {v.EMAIL_RULE}"),
        (v.check_env_key_not_reserved, "PORT", "is set by omni itself and cannot be overridden"),
    ],
)
def test_rejection_message_is_exact(check: Callable[[str], str], value: str,
                                    message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$") as info:
        check(value)
    assert str(info.value) == message
    assert info.value.__cause__ is None


def test_rule_texts_say_what_is_allowed() -> None:
    assert v.DOMAIN_RULE.startswith("a lowercase ASCII hostname")
    assert "at most 63" in v.DOMAIN_RULE
    assert "2-40" in v.SLUG_RULE
    assert "1-32" in v.HOST_NAME_RULE


@pytest.mark.parametrize("value", ["X", "XX", "X marks the spot", "\t", "tab\tvalue", "\\n"])
def test_env_value_refuses_only_line_breaks_and_nul(value: str) -> None:
    assert v.check_env_value(value) == value


EMAIL_OK = ["ops@example.com", "a@b.co", "first.last+tag@mail.example.org", "a_b%c@x-y.example",
            "o-p@example.com", f"{'a' * 64}@example.com", "a.@example.com"]
EMAIL_BAD = ["", "ops", "@example.com", "ops@", "Ops@example.com", "ops@Example.com",
             ".ops@example.com", "-ops@example.com", "ops@localhost", "ops@example.com.",
             "ops@@example.com", "a@b@example.com", "ops@127.0.0.1", "ops@-x.example.com",
             f"{'a' * 65}@example.com", "ops example@example.com", "ops@example.com\n",
             "ops;id@example.com", "op's@example.com", "ops@exa_mple.com"]


@pytest.mark.parametrize("value", EMAIL_OK)
def test_email_accepted(value: str) -> None:
    assert v.check_email(value) == value


@pytest.mark.parametrize("value", EMAIL_BAD)
def test_email_rejected_with_the_rule(value: str) -> None:
    with pytest.raises(ValueError, match=r"^must be a lowercase e-mail address") as info:
        v.check_email(value)
    assert str(info.value) == f"must be {v.EMAIL_RULE}"


# Written out here, not read from v.RESERVED_ENV_KEYS: a key dropped from the code's set
# must make this test fail (a tenant could then override DATABASE_URL or a secret).
RESERVED_LITERAL = [
    "DATABASE_URL", "REDIS_URL", "JWT_SECRET", "COOKIE_SECRET", "PORT", "HOST",
    "MEDUSA_BACKEND_URL", "NODE_ENV", "STORE_CORS", "ADMIN_CORS", "AUTH_CORS",
]


@pytest.mark.parametrize("key", RESERVED_LITERAL)
def test_each_reserved_key_from_an_independent_list_is_refused(key: str) -> None:
    with pytest.raises(ValueError, match=r"^is set by omni itself and cannot be overridden$"):
        v.check_env_key_not_reserved(key)


def test_every_key_omni_derives_for_medusa_is_reserved() -> None:
    from omni.tenant.environment import medusa_env
    from tests.factories import make_spec

    derived = set(medusa_env(make_spec(env={})))
    assert derived == set(RESERVED_LITERAL)
    assert set(RESERVED_LITERAL) == v.RESERVED_ENV_KEYS


@pytest.mark.parametrize("key", ["PORTS", "HOSTNAME", "DATABASE_URL_RO", "MY_PORT", "port"])
def test_near_misses_of_reserved_keys_are_not_reserved(key: str) -> None:
    if key.isupper():
        assert v.check_env_key_not_reserved(key) == key
    else:
        with pytest.raises(ValueError, match="uppercase"):
            v.check_env_key_not_reserved(key)


@pytest.mark.parametrize("value", ["localhost", "::", "fe80::1", "192.0.2.1", "a.b"])
def test_address_accepts_ip_hostname_or_localhost(value: str) -> None:
    assert v.check_address(value) == value


@pytest.mark.parametrize("name", ["shop.0x1", "1.2.3.0x4", "a.0x", "shop.0xff"])
def test_a_last_label_a_url_parser_reads_as_ipv4_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        v.check_domain(name)


@pytest.mark.parametrize("name", ["shop.0xa1b2.example", "0x1.example", "shop.x0"])
def test_hex_looking_labels_elsewhere_are_hostnames(name: str) -> None:
    assert v.check_domain(name) == name
