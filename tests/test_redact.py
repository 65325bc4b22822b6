"""omni/redact.py: the redactor every outgoing string passes through, and ``mask_argv``.

Table-driven; each row names the leak it guards against. Kept strict enough that a
mutation of the module (``make mutation``) fails at least one row.
"""

from __future__ import annotations

import pytest

from omni.redact import MASK, Redactor, mask_argv

SHORT = "abcdefgh"  # exactly 8 characters: the shortest value that is masked
LONG = SHORT + "-and-a-longer-tail"  # starts with SHORT


def test_mask_is_eight_stars() -> None:
    assert MASK == "********"


REDACT_CASES: list[tuple[str, list[str], str, str]] = [
    # (id, secrets, text, expected)
    ("nothing-registered", [], "plain abcdefgh text", "plain abcdefgh text"),
    ("one-secret", [SHORT], f"pw={SHORT}", f"pw={MASK}"),
    ("every-occurrence", [SHORT], f"{SHORT} and {SHORT}", f"{MASK} and {MASK}"),
    ("inside-another-line", [SHORT], f"x{SHORT}y", f"x{MASK}y"),
    # Shortest first would turn LONG into MASK + "-and-a-longer-tail": the tail leaks.
    ("longer-secret-starting-with-a-shorter-one", [SHORT, LONG], f"a={LONG} b={SHORT}",
     f"a={MASK} b={MASK}"),
    ("same-registered-the-other-way-round", [LONG, SHORT], f"a={LONG}", f"a={MASK}"),
    # Reverse alphabetical order would mask the inner "zzzzzzzz" first and leak the rest.
    ("length-not-alphabet-decides", ["zzzzzzzz", "aaaa-zzzzzzzz-tail"],
     "x aaaa-zzzzzzzz-tail zzzzzzzz", f"x {MASK} {MASK}"),
    ("secret-inside-a-longer-one", ["zzzzzzzz", "aaaa-zzzzzzzz-tail", SHORT, LONG],
     f"{LONG} aaaa-zzzzzzzz-tail", f"{MASK} {MASK}"),
    ("exactly-eight-chars-is-masked", ["12345678"], "id 12345678", f"id {MASK}"),
    ("seven-chars-is-too-short-to-mask", ["1234567"], "id 1234567", "id 1234567"),
    ("empty-is-never-a-secret", [""], "abc", "abc"),
    ("nine-chars", ["123456789"], "123456789", MASK),
    ("unicode-secret", ["pässwörd-ü"], "x pässwörd-ü y", f"x {MASK} y"),
]


@pytest.mark.parametrize(("case", "secrets", "text", "expected"), REDACT_CASES,
                         ids=[c[0] for c in REDACT_CASES])
def test_redactor_text(case: str, secrets: list[str], text: str, expected: str) -> None:
    assert Redactor(secrets).text(text) == expected
    later = Redactor()
    later.add(*secrets)
    assert later.text(text) == expected


def test_redactor_accepts_any_iterable_and_adds_up() -> None:
    redactor = Redactor(s for s in [SHORT])
    redactor.add("second-secret", "tiny")
    assert redactor.text(f"{SHORT} second-secret tiny") == f"{MASK} {MASK} tiny"


@pytest.mark.parametrize(
    ("value", "known"),
    [(SHORT, True), ("12345678", True), ("1234567", False), ("other-value", False),
     (SHORT[:-1], False), (None, False), (12345678, False)],
)
def test_redactor_contains_only_registered_secrets(value: object, known: bool) -> None:
    redactor = Redactor([SHORT, "12345678", "1234567"])
    assert (value in redactor) is known


def test_a_fresh_redactor_knows_nothing() -> None:
    redactor = Redactor()
    assert SHORT not in redactor
    assert redactor.text(SHORT) == SHORT


ARGV_CASES: list[tuple[str, list[str], list[str]]] = [
    # (id, argv, expected)
    ("no-options", ["medusa", "user", "-e", "a@b.c"], ["medusa", "user", "-e", "a@b.c"]),
    ("equals-form", ["--password=hunter22"], [f"--password={MASK}"]),
    ("equals-form-value-with-equals", ["--password=a=b=c"], [f"--password={MASK}"]),
    ("space-form", ["--token", "abc", "rest"], ["--token", MASK, "rest"]),
    ("only-the-next-argument", ["--token", "abc", "def", "ghi"], ["--token", MASK, "def", "ghi"]),
    ("next-is-an-option-not-a-value", ["--password", "--verbose", "x"],
     ["--password", "--verbose", "x"]),
    ("secret-option-last", ["cmd", "--secret"], ["cmd", "--secret"]),
    ("single-dash", ["-password", "pw"], ["-password", MASK]),
    ("case-insensitive", ["--DB-PASSWORD=x", "--Api-Key", "k"],
     [f"--DB-PASSWORD={MASK}", "--Api-Key", MASK]),
    ("each-word", [f"--{w}=v" for w in ("password", "passwd", "secret", "token", "credential",
                                       "apikey", "api-key", "api_key", "private-key",
                                       "private_key")],
     [f"--{w}={MASK}" for w in ("password", "passwd", "secret", "token", "credential",
                               "apikey", "api-key", "api_key", "private-key", "private_key")]),
    ("word-inside-a-longer-name", ["--admin-password-file", "/p"],
     ["--admin-password-file", MASK]),
    ("not-an-option", ["password", "token=x"], ["password", "token=x"]),
    # The option's name is what precedes the first '=': a value that mentions a word is not
    # a reason to mask, nor is a space inside the value.
    ("word-only-in-the-value", ["--user=secretive", "--note=my-token=1", "--msg=a token"],
     ["--user=secretive", "--note=my-token=1", "--msg=a token"]),
    ("masks-twice", ["--token", "a", "--password=b", "--secret", "c", "d"],
     ["--token", MASK, f"--password={MASK}", "--secret", MASK, "d"]),
    ("empty", [], []),
]


@pytest.mark.parametrize(("case", "argv", "expected"), ARGV_CASES,
                         ids=[c[0] for c in ARGV_CASES])
def test_mask_argv(case: str, argv: list[str], expected: list[str]) -> None:
    assert mask_argv(argv) == expected
    assert mask_argv(iter(argv)) == expected  # any iterable


def test_mask_argv_does_not_change_its_input() -> None:
    argv = ["--token", "abc"]
    mask_argv(argv)
    assert argv == ["--token", "abc"]
