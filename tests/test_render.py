"""omni/render.py beyond the vhost's content (tests/test_vhost_render.py): where templates
come from (checkout or installed wheel), the environment's settings, the nginx filters'
refusals, listen addresses (IPv6), digests and seals. Pure; no server.
"""

from __future__ import annotations

import hashlib
import sys
import tomllib
from pathlib import Path

import pytest

from omni import render as r
from omni.errors import InvalidInput
from omni.tenant.spec import TenantSpec
from tests.factories import make_host, make_spec

ROOT = Path(__file__).resolve().parent.parent


def _sha16(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- where templates come from


def test_templates_come_from_the_checkout_when_there_is_one() -> None:
    found = r._templates_dir()
    assert found == Path(r.__file__).resolve().parent.parent / "templates"
    assert (found / "nginx" / "tenant.conf.j2").is_file()
    assert found == r.TEMPLATES_DIR


def test_an_installed_wheel_reads_templates_from_its_data_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # omni installed as a wheel: no templates/ beside the package, a prefix with share/.
    site = tmp_path / "site-packages" / "omni"
    site.mkdir(parents=True)
    monkeypatch.setattr(r, "__file__", str(site / "render.py"))
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "prefix"))
    assert r._templates_dir() == tmp_path / "prefix" / "share" / "omni" / "templates"


def test_the_wheel_path_is_where_pyproject_installs_the_templates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "data-files"]
    prefix = tmp_path / "prefix"
    for target, sources in data_files.items():  # install the data files as pip would
        (prefix / target).mkdir(parents=True)
        for pattern in sources:
            for source in ROOT.glob(pattern):
                (prefix / target / source.name).write_bytes(source.read_bytes())
    monkeypatch.setattr(r, "__file__", str(tmp_path / "lib" / "omni" / "render.py"))
    monkeypatch.setattr(sys, "prefix", str(prefix))
    installed = r._templates_dir()
    spec = make_spec()
    assert r.render_vhost(spec, templates_dir=installed) == r.render_vhost(spec)
    assert (installed / "medusa" / "medusa.env.j2").is_file()


# ---------------------------------------------------------------- the jinja2 environment


def test_environment_keeps_blocks_out_of_the_output(tmp_path: Path) -> None:
    (tmp_path / "t.j2").write_text(
        "a\n    {% for x in xs %}\n  - {{ x }}\n    {% endfor %}\n    {% if flag %}\nflag\n"
        "    {% endif %}\nend\n"
    )
    # trim_blocks drops the newline after a block tag, lstrip_blocks the indent before it,
    # keep_trailing_newline keeps the file's last newline.
    assert r.render("t.j2", templates_dir=tmp_path, xs=[1, 2], flag=True) == (
        "a\n  - 1\n  - 2\nflag\nend\n"
    )


ENV_VALUES = ["a&b", "<script>", "x > y", 'say "hi"', "it's", "&amp; &lt;", "{{ x }}", "%s"]


def test_env_values_reach_the_env_file_verbatim() -> None:
    # Autoescape is off: config files, not HTML. `& < > " '` must not become entities.
    env = {f"K{i}": value for i, value in enumerate(ENV_VALUES)}
    text = r.render("medusa/medusa.env.j2", slug="acme", host="dev", env=env)
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert body == [f"K{i}={value}" for i, value in enumerate(ENV_VALUES)]
    assert text.endswith(f"K{len(ENV_VALUES) - 1}={ENV_VALUES[-1]}\n")


def test_environment_has_the_nginx_filters_and_refuses_undefined() -> None:
    env = r.environment()
    assert env.filters["nginx_token"] is r.nginx_token
    assert env.filters["server_name"] is r.nginx_server_name
    assert env.autoescape is False
    assert env.from_string("{{ v }}").render(v="<&>") == "<&>"


# ---------------------------------------------------------------- nginx filters


@pytest.mark.parametrize(
    ("value", "expected"),
    [("/var/www/acme", "/var/www/acme"), (8080, "8080"), ("[::1]:443", "[::1]:443"),
     ("a-b_c.d@e+f:g", None)],
)
def test_nginx_token_accepts_plain_tokens(value: object, expected: str | None) -> None:
    assert r.nginx_token(value) == (expected if expected is not None else value)


@pytest.mark.parametrize("value", ["a b", "a;b", "a{", "}", "#", "$x", "a\\b", "'a'", '"a"',
                                   "a\n", "a\tb", "", "ü"])
def test_nginx_token_refusal_names_the_value_and_the_rule(value: str) -> None:
    with pytest.raises(InvalidInput) as info:
        r.nginx_token(value)
    assert info.value.message == (
        f"refusing to render {value!r} into nginx config: not a plain token "
        "(letters, digits and ._:/@+-[] only)"
    )
    assert info.value.fields == {"field": "nginx"}


def test_server_name_refusal_names_the_domain_and_the_rule() -> None:
    assert r.nginx_server_name("shop.example.com") == "shop.example.com"
    with pytest.raises(InvalidInput) as info:
        r.nginx_server_name("Shop.example.com")
    assert info.value.message.startswith("domain 'Shop.example.com' must be lowercase; rule: ")
    assert info.value.fields == {"field": "domains"}
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__ is True


# ---------------------------------------------------------------- listen addresses


@pytest.mark.parametrize(
    ("address", "port", "expected"),
    [
        (None, 80, "80"),
        ("127.0.0.2", 8080, "127.0.0.2:8080"),
        ("::1", 443, "[::1]:443"),
        ("2001:db8::1", 80, "[2001:db8::1]:80"),
        ("::", 80, "[::]:80"),
        ("host.example", 80, "host.example:80"),
    ],
)
def test_listen_brackets_ipv6_addresses(address: str | None, port: int, expected: str) -> None:
    assert r._listen(address, port) == expected


def _ipv6_spec() -> TenantSpec:
    spec = make_spec()
    host = make_host(bind_address="::1", nginx={"listen_address": "2001:db8::1"})
    return TenantSpec(tenant=spec.tenant, host=host, secrets=spec.secrets,
                      app_port=spec.app_port, redis_port=spec.redis_port, now=spec.now)


def test_vhost_on_ipv6_listen_and_upstream_addresses() -> None:
    conf = r.render_vhost(_ipv6_spec())
    assert "listen [2001:db8::1]:80;" in conf
    assert "listen [2001:db8::1]:443 ssl http2;" in conf
    assert "proxy_pass http://[::1]:9001;" in conf
    context = r.vhost_context(_ipv6_spec())
    assert (context["http_listen"], context["https_listen"], context["upstream"]) == (
        "[2001:db8::1]:80", "[2001:db8::1]:443", "[::1]:9001")


def test_acme_default_server_on_ipv6_and_on_all_addresses() -> None:
    conf = r.render_acme_default(make_host(nginx={"listen_address": "::1", "http_port": 8080}))
    assert "listen [::1]:8080 default_server;" in conf
    assert "listen 80 default_server;" in r.render_acme_default(make_host())


# ---------------------------------------------------------------- custom templates, digests


def _tiny_templates(tmp_path: Path) -> Path:
    (tmp_path / "nginx").mkdir()
    (tmp_path / "nginx" / "tenant.conf.j2").write_text(
        "# omni-vhost-digest: {{ digest }}\n{{ slug }} {{ http_listen }} {{ upstream }}\n"
    )
    (tmp_path / "nginx" / "acme-default.conf.j2").write_text(
        "acme {{ http_listen }} {{ webroot }}\n"
    )
    return tmp_path


def test_render_vhost_uses_the_given_templates_and_digests_the_placeholder_draft(
    tmp_path: Path,
) -> None:
    templates = _tiny_templates(tmp_path)
    body = "acme 80 127.0.0.2:9001\n"
    digest = _sha16(f"# omni-vhost-digest: {'0' * 16}\n{body}")
    assert r.render_vhost(make_spec(), templates_dir=templates) == (
        f"# omni-vhost-digest: {digest}\n{body}"
    )


def test_render_acme_default_uses_the_given_templates(tmp_path: Path) -> None:
    host = make_host(nginx={"listen_address": "127.0.0.3", "http_port": 81})
    assert r.render_acme_default(host, templates_dir=_tiny_templates(tmp_path)) == (
        "acme 127.0.0.3:81 /var/www/acme\n"
    )


def test_rendered_vhost_is_intact_and_its_digest_is_that_of_the_draft() -> None:
    conf = r.render_vhost(make_spec())
    digest = r.vhost_digest(conf)
    assert digest is not None
    assert r.vhost_intact(conf) is True
    assert digest == _sha16(conf.replace(digest, "0" * 16))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("# omni-vhost-digest: 0123456789abcdef\n", "0123456789abcdef"),
        ("x\n# omni-vhost-digest: 0123456789abcdef\ny\n", "0123456789abcdef"),
        ("# omni-vhost-digest: 0123456789abcde\n", None),  # 15 digits
        ("# omni-vhost-digest: 0123456789ABCDEF\n", None),  # upper case
        ("# omni-vhost-digest: 0123456789abcdef", None),  # no newline
        ("server {}\n", None),
        ("", None),
    ],
)
def test_vhost_digest(content: str, expected: str | None) -> None:
    assert r.vhost_digest(content) == expected


def _vhost_cases() -> list[tuple[str, str, bool]]:
    conf = r.render_vhost(make_spec())
    digest = r.vhost_digest(conf)
    assert digest is not None
    other = "f" * 16 if digest != "f" * 16 else "e" * 16
    tiny = f"# omni-vhost-digest: {_sha16('# omni-vhost-digest: ' + '0' * 16 + chr(10))}\n"
    return [
        ("as-rendered", conf, True),
        ("edited-by-hand", conf.replace("proxy_pass", "proxy_pass  "), False),
        ("digest-removed", conf.replace(f"# omni-vhost-digest: {digest}\n", ""), False),
        ("digest-swapped", conf.replace(digest, other), False),
        ("placeholder", conf.replace(digest, "0" * 16), False),
        ("empty", "", False),
        ("tiny-and-honest", tiny, True),
    ]


@pytest.mark.parametrize(("case", "content", "intact"), _vhost_cases(),
                         ids=[c[0] for c in _vhost_cases()])
def test_vhost_intact(case: str, content: str, intact: bool) -> None:
    assert r.vhost_intact(content) is intact


# ---------------------------------------------------------------- seals


def test_seal_appends_a_digest_line_of_everything_above() -> None:
    text = "requirepass x\nport 1\n"
    assert r.seal(text) == f"{text}# omni-digest: {_sha16(text)}\n"
    assert r.seal("") == f"# omni-digest: {_sha16('')}\n"


def _seal_cases() -> list[tuple[str, str, bool]]:
    text = "a = 1\nb = 2\n"
    sealed = r.seal(text)
    digest = _sha16(text)
    return [
        ("sealed", sealed, True),
        ("sealed-empty", r.seal(""), True),
        ("body-edited", sealed.replace("a = 1", "a = 2"), False),
        ("line-appended", sealed + "c = 3\n", False),
        ("seal-not-last", sealed.replace(f"# omni-digest: {digest}\n", "") + "x\n", False),
        ("digest-wrong", f"{text}# omni-digest: {'0' * 16}\n", False),
        ("no-final-newline", sealed.rstrip("\n"), False),
        ("no-seal", text, False),
        ("empty", "", False),
        ("resealed-twice", r.seal(sealed), True),
    ]


@pytest.mark.parametrize(("case", "content", "intact"), _seal_cases(),
                         ids=[c[0] for c in _seal_cases()])
def test_seal_intact(case: str, content: str, intact: bool) -> None:
    assert r.seal_intact(content) is intact
