"""Rendering the tenant's nginx vhost (pure; no server)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from omni.engine.step import Verb
from omni.errors import InvalidInput
from omni.inventory.models import Tenant
from omni.render import LIVE_CHECK_PATH, render, render_acme_default, render_vhost, vhost_digest
from omni.resources.vhost import VhostResource
from omni.tenant.spec import TenantSpec
from tests.factories import make_host, make_secrets, make_spec


def _spec(host: dict[str, Any] | None = None, **tenant: Any) -> TenantSpec:
    spec = make_spec(**tenant)
    if host:
        spec = TenantSpec(
            tenant=spec.tenant, host=make_host(**host), secrets=spec.secrets,
            app_port=spec.app_port, redis_port=spec.redis_port, now=spec.now,
        )
    return spec


def _servers(conf: str) -> list[str]:
    """The two top-level server blocks (the template has no nested braces beyond locations)."""
    blocks, depth, start = [], 0, 0
    for i, ch in enumerate(conf):
        if ch == "{":
            if depth == 0:
                start = conf.rfind("server", 0, i)
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                blocks.append(conf[start : i + 1])
    return blocks


def test_one_domain_renders_http_and_https_servers() -> None:
    spec = _spec()
    conf = render_vhost(spec)
    http, https = _servers(conf)
    assert "listen 80;" in http
    assert "server_name shop.acme.example;" in http
    assert "location ^~ /.well-known/acme-challenge/ {\n        root /var/www/acme;" in http
    assert "default_type text/plain;" in http
    assert "return 301 https://$host$request_uri;" in http
    assert "proxy_pass" not in http

    assert "listen 443 ssl http2;" in https
    assert "server_name shop.acme.example;" in https
    assert f"ssl_certificate {spec.fullchain_path};" in https
    assert f"ssl_certificate_key {spec.privkey_path};" in https
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in https
    assert "proxy_pass http://127.0.0.2:9001;" in https
    for header in ("Host $host", "X-Forwarded-For $proxy_add_x_forwarded_for",
                   "X-Forwarded-Proto $scheme"):
        assert f"proxy_set_header {header};" in https
    assert re.search(r"proxy_read_timeout \d+s;", https)
    assert re.search(r"client_max_body_size \d+m;", https)


def test_header_names_tenant_and_says_managed() -> None:
    first_line = render_vhost(_spec()).splitlines()[0]
    assert "acme" in first_line
    assert "managed by omni; do not edit" in first_line


def test_several_domains_share_both_servers_in_order() -> None:
    conf = render_vhost(_spec(domains=["shop.acme.example", "www.acme.example", "acme.example"]))
    names = "server_name shop.acme.example www.acme.example acme.example;"
    assert conf.count(names) == 2


def test_listen_address_is_used_when_set() -> None:
    conf = render_vhost(_spec(host={"nginx": {"listen_address": "127.0.0.2",
                                              "http_port": 8080, "https_port": 8443}}))
    assert "listen 127.0.0.2:8080;" in conf
    assert "listen 127.0.0.2:8443 ssl http2;" in conf


def test_rendering_is_deterministic_and_digest_tracks_content() -> None:
    a, b = render_vhost(_spec()), render_vhost(_spec())
    assert a == b
    digest = vhost_digest(a)
    assert digest is not None
    assert re.fullmatch(r"[0-9a-f]{16}", digest)
    # the live-check location answers the file's own digest, in both servers
    assert a.count(f"location = {LIVE_CHECK_PATH} {{") == 2
    assert a.count(f'return 200 "{digest}\\n";') == 2
    other = render_vhost(_spec(domains=["other.acme.example"]))
    assert vhost_digest(other) != digest


def test_no_secret_reaches_the_vhost() -> None:
    conf = render_vhost(_spec())
    for secret in make_secrets().values():
        assert secret not in conf


def _bypass(domain: str) -> TenantSpec:
    """A spec whose tenant skipped validation (model_construct), as if a check were missed."""
    spec = make_spec()
    tenant = Tenant.model_construct(**{**spec.tenant.model_dump(), "domains": [domain]})
    return TenantSpec(tenant=tenant, host=spec.host, secrets=spec.secrets,
                      app_port=spec.app_port, redis_port=spec.redis_port, now=spec.now)


@pytest.mark.parametrize(
    "domain",
    [
        "a.example; } server { listen 81; } #",
        "a.example location / { return 200; }",
        "~^(?<x>.+)$",
        "*.acme.example",
        "_",
        "Shop.Acme.Example",
        "a.example\n",
        "$host",
        "localhost",
    ],
)
def test_server_name_that_slipped_past_validation_is_refused(domain: str) -> None:
    with pytest.raises(InvalidInput, match="domain"):
        render_vhost(_bypass(domain))


def test_nginx_token_filter_refuses_directive_breakers(tmp_path: Any) -> None:
    (tmp_path / "t.j2").write_text("root {{ value | nginx_token }};\n")
    assert render("t.j2", templates_dir=tmp_path, value="/var/www/acme") == "root /var/www/acme;\n"
    for bad in ["/var/www; include /etc/passwd", "/a b", "/x}", '/x"', "/x#", "/$x", ""]:
        with pytest.raises(InvalidInput):
            render("t.j2", templates_dir=tmp_path, value=bad)


def test_missing_template_variable_is_an_error(tmp_path: Any) -> None:
    import jinja2

    (tmp_path / "t.j2").write_text("{{ absent }}\n")
    with pytest.raises(jinja2.UndefinedError):
        render("t.j2", templates_dir=tmp_path)


def test_acme_default_server_serves_only_challenges() -> None:
    conf = render_acme_default(make_host(nginx={"listen_address": "127.0.0.2"}))
    assert "listen 127.0.0.2:80 default_server;" in conf
    assert "root /var/www/acme;" in conf
    assert "return 404;" in conf


def test_plan_is_noop_when_bytes_match_else_diff() -> None:
    resource = VhostResource(_spec())
    path = resource.path
    (create,) = resource.plan(None)
    assert create.verb is Verb.CREATE
    assert create.diff is not None
    assert create.diff.startswith(f"--- /dev/null\n+++ b{path}\n")

    (same,) = resource.plan(resource.content.encode())
    assert same.verb is Verb.NOOP

    old = resource.content.replace("proxy_pass http://127.0.0.2:9001;",
                                   "proxy_pass http://127.0.0.2:9002;")
    (update,) = resource.plan(old.encode())
    assert update.verb is Verb.UPDATE
    assert update.diff is not None
    assert f"--- a{path}\n+++ b{path}\n" in update.diff
    assert "-        proxy_pass http://127.0.0.2:9002;" in update.diff
    assert "+        proxy_pass http://127.0.0.2:9001;" in update.diff


def test_plan_reloads_when_file_is_in_place_but_not_serving() -> None:
    from omni.resources.vhost import VhostState

    resource = VhostResource(_spec())
    desired = resource.content.encode()
    (step,) = resource.plan(VhostState(desired, not_live="http answered 404"))
    assert step.verb is Verb.RELOAD
    assert "http answered 404" in step.summary
    (ok,) = resource.plan(VhostState(desired, not_live=None))
    assert ok.verb is Verb.NOOP
