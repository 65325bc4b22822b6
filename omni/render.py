"""Rendering files from the repository's ``templates/`` directory (jinja2).

One environment per templates directory, built once by :func:`environment`: templates load from
``templates/`` at the repository root, undefined variables are errors (``StrictUndefined``),
autoescape is off (the outputs are config files, not HTML). Rendering is deterministic: the
same context gives the same bytes.

Values that reach an nginx directive go through the ``nginx_token`` filter, which refuses
anything that could end a directive or open a block, so no value can break out of its place.
"""

from __future__ import annotations

import functools
import hashlib
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from omni import validation
from omni.errors import InvalidInput

if TYPE_CHECKING:
    from omni.inventory.models import Host
    from omni.tenant.spec import TenantSpec

def _templates_dir() -> Path:
    """``templates/`` of the checkout (editable install), else the copy a wheel installs
    under ``<prefix>/share/omni/templates`` (see ``[tool.setuptools.data-files]``)."""
    checkout = Path(__file__).resolve().parent.parent / "templates"
    if checkout.is_dir():
        return checkout
    return Path(sys.prefix) / "share" / "omni" / "templates"


TEMPLATES_DIR = _templates_dir()

# No whitespace, quotes, ';', '{', '}', '#', '$', '\\' or control characters: a value made
# of these characters stays one nginx token.
_NGINX_TOKEN = re.compile(r"^[A-Za-z0-9._:/@+\-\[\]]+$")


def nginx_token(value: object) -> str:
    """Return ``value`` as a string if it is a safe single nginx token, else raise."""
    text = str(value)
    if not _NGINX_TOKEN.fullmatch(text):
        raise InvalidInput(
            f"refusing to render {text!r} into nginx config: not a plain token "
            "(letters, digits and ._:/@+-[] only)",
            field="nginx",
        )
    return text


def nginx_server_name(value: object) -> str:
    """A ``server_name`` entry: must satisfy the domain rule (no regex, wildcard or '_')."""
    text = str(value)
    try:
        validation.check_domain(text)
    except ValueError as exc:
        raise InvalidInput(f"domain {text!r} {exc}", field="domains") from None
    return nginx_token(text)


def environment(templates_dir: Path | None = None) -> jinja2.Environment:
    """The environment for ``templates_dir`` (default: the repository's), built once:
    jinja2 compiles a template the first time an environment loads it and keeps it."""
    return _environment(templates_dir or TEMPLATES_DIR)


@functools.lru_cache(maxsize=8)
def _environment(templates_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701 - config files, not HTML
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["nginx_token"] = nginx_token
    env.filters["server_name"] = nginx_server_name
    return env


def render(template_name: str, *, templates_dir: Path | None = None, **context: Any) -> str:
    """Render ``template_name`` (relative to ``templates/``) with ``context``.

    Raises ``jinja2.UndefinedError`` for a missing variable, ``InvalidInput`` when a filter
    refuses a value.
    """
    return environment(templates_dir).get_template(template_name).render(**context)


VHOST_TEMPLATE = "nginx/tenant.conf.j2"
# The exact-match location every omni vhost answers with its own digest, so a probe can
# tell the new config is live (nginx -t does not bind ports; a reload can leave the old
# config serving while returning 0).
LIVE_CHECK_PATH = "/.well-known/omni-vhost"
_DIGEST_PLACEHOLDER = "0" * 16


def _listen(address: str | None, port: int) -> str:
    if address is None:
        return str(port)
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{port}"


def vhost_context(spec: TenantSpec) -> dict[str, Any]:
    nginx = spec.host.nginx
    return {
        "slug": spec.slug,
        "domains": list(spec.tenant.domains),
        "http_listen": _listen(nginx.listen_address, nginx.http_port),
        "https_listen": _listen(nginx.listen_address, nginx.https_port),
        "webroot": spec.host.acme.webroot,
        "fullchain": spec.fullchain_path,
        "privkey": spec.privkey_path,
        "upstream": f"{_listen(spec.bind_address, spec.app_port)}",
        "live_check_path": LIVE_CHECK_PATH,
        "client_max_body_size": "50m",
    }


def render_vhost(spec: TenantSpec, *, templates_dir: Path | None = None) -> str:
    """The tenant's nginx vhost. Deterministic; embeds a digest of its own content.

    The digest (sha256 of the file rendered with a zero placeholder, 16 hex chars) is what
    :data:`LIVE_CHECK_PATH` answers, which lets the installer prove the new file is live.
    """
    context = vhost_context(spec)
    draft = render(VHOST_TEMPLATE, templates_dir=templates_dir, digest=_DIGEST_PLACEHOLDER,
                   **context)
    digest = hashlib.sha256(draft.encode()).hexdigest()[:16]
    return render(VHOST_TEMPLATE, templates_dir=templates_dir, digest=digest, **context)


def vhost_digest(content: str) -> str | None:
    """The digest a rendered vhost answers on :data:`LIVE_CHECK_PATH` (None if absent)."""
    match = re.search(r"# omni-vhost-digest: ([0-9a-f]{16})\n", content)
    return match.group(1) if match else None


def vhost_intact(content: str) -> bool:
    """Whether ``content`` is a vhost exactly as omni rendered it (its embedded digest
    still matches): a vhost that differs from today's render but is intact is stale, one
    that is not intact was edited by hand."""
    digest = vhost_digest(content)
    if digest is None:
        return False
    draft = content.replace(digest, _DIGEST_PLACEHOLDER)
    return hashlib.sha256(draft.encode()).hexdigest()[:16] == digest


_SEAL = re.compile(r"# omni-digest: ([0-9a-f]{16})\n\Z")


def seal(text: str) -> str:
    """``text`` with a last line carrying a digest of everything above it, so a file that
    omni wrote can later be told apart from one edited by hand (see :func:`seal_intact`)."""
    return f"{text}# omni-digest: {hashlib.sha256(text.encode()).hexdigest()[:16]}\n"


def seal_intact(content: str) -> bool:
    """Whether ``content`` ends with an omni seal that matches the text above it."""
    match = _SEAL.search(content)
    if match is None:
        return False
    body = content[: match.start()]
    return hashlib.sha256(body.encode()).hexdigest()[:16] == match.group(1)


ACME_DEFAULT_TEMPLATE = "nginx/acme-default.conf.j2"


def render_acme_default(host: Host, *, templates_dir: Path | None = None) -> str:
    """The host's catch-all HTTP server answering ``/.well-known/acme-challenge/``.

    A production host installs it once (e.g. as ``<sites_dir>/00-omni-acme.conf``) so a new
    domain's challenge is answered before the tenant's own vhost exists.
    """
    nginx = host.nginx
    return render(
        ACME_DEFAULT_TEMPLATE,
        templates_dir=templates_dir,
        http_listen=_listen(nginx.listen_address, nginx.http_port),
        webroot=host.acme.webroot,
    )
