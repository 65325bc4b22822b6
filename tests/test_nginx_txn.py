"""The transactional vhost install against a real nginx (1.22) this test starts itself.

No lab needed: each test runs its own nginx master on a private loopback address with its
own prefix, config and pid file, driven through the local transport exactly as omni drives a
host. Skipped when nginx is not installed or not running as root.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from omni import probe
from omni.errors import StepFailed
from omni.hosts.session import HostSession
from omni.inventory.models import Host
from omni.nginx import InstallOptions, install_config
from omni.resources.vhost import VhostResource
from omni.tenant.spec import TenantSpec
from tests.factories import make_secrets, make_tenant
from tests.lab import wait_until

needs_nginx = pytest.mark.skipif(
    shutil.which("nginx") is None or os.geteuid() != 0, reason="needs nginx and root"
)

FAST = InstallOptions(live_deadline_seconds=3.0, poll_interval_seconds=0.1)


def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def _write_ca_and_leaf(
    directory: Path, certs_dir: Path, slugs_domains: dict[str, list[str]]
) -> Path:
    """A throwaway CA (its cert at ``directory/ca.pem``) and a leaf per tenant."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "omni txn test CA")])
    now = datetime.now(UTC)
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for slug, domains in slugs_domains.items():
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = (
            x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in domains]),
                           critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        cdir = certs_dir / slug / "live"  # TenantSpec.fullchain_path/privkey_path
        cdir.mkdir(parents=True)
        (cdir / "fullchain.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        (cdir / "privkey.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
    return ca_path


@dataclass
class PrivateNginx:
    host: Host
    session: HostSession
    conf: Path

    def spec(self, slug: str, domains: list[str], host: Host | None = None) -> TenantSpec:
        return TenantSpec(
            tenant=make_tenant(slug=slug, domains=domains), host=host or self.host,
            secrets=make_secrets(), app_port=9001, redis_port=6401,
            now=datetime.now(UTC),
        )


TENANTS = {"alpha": ["alpha.txn.test"], "beta": ["beta.txn.test", "www.beta.txn.test"]}


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[PrivateNginx]:
    address = f"127.0.{random.randint(100, 250)}.{random.randint(2, 250)}"
    root = tmp_path / "nginx"
    sites, certs, webroot, temp = (root / "sites", root / "certs", root / "webroot", root / "tmp")
    for d in (sites, certs, webroot, temp):
        d.mkdir(parents=True)
    ca = _write_ca_and_leaf(root, certs, TENANTS)
    conf = root / "nginx.conf"
    conf.write_text(
        f"""user root;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {sites}/*.conf;
}}
"""
    )
    host = Host(
        name="dev", address=address, transport="local", bind_address=address,
        nginx={
            "sites_dir": str(sites),
            "test_command": ["nginx", "-c", str(conf), "-t"],
            "reload_command": ["nginx", "-c", str(conf), "-s", "reload"],
            "listen_address": address,
            "http_port": _free_port(address),
            "https_port": _free_port(address),
            "certs_dir": str(certs),
        },
        acme={"email": "ops@txn.test", "webroot": str(webroot)},
        health={"ca_bundle": str(ca)},
    )
    subprocess.run(["nginx", "-c", str(conf)], check=True, timeout=30)
    session = HostSession(host)
    try:
        yield PrivateNginx(host, session, conf)
    finally:
        session.close()
        _stop(conf, root / "nginx.pid")


def _stop(conf: Path, pidfile: Path) -> None:
    """Stop the private nginx for sure: ``-s stop`` can race a reload still in flight."""
    pid = int(pidfile.read_text()) if pidfile.exists() else None
    subprocess.run(["nginx", "-c", str(conf), "-s", "stop"], check=False, timeout=30)
    if pid is None:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        threading.Event().wait(0.05)
    os.kill(pid, signal.SIGKILL)


def _install(nginx: PrivateNginx, resource: VhostResource) -> None:
    (step,) = resource.plan(resource.observe(nginx.session))
    resource.apply(nginx.session, step)


@needs_nginx
def test_new_vhost_goes_live_over_http_and_https_then_plans_noop(nginx: PrivateNginx) -> None:
    resource = VhostResource(nginx.spec("beta", TENANTS["beta"]), options=FAST)
    _install(nginx, resource)

    assert resource.check_live() is None
    host = nginx.host
    status, body, sans = probe.https_get(host.address, host.nginx.https_port, "www.beta.txn.test",
                                         "/.well-known/omni-vhost", host.health.ca_bundle, 5)
    assert (status, body.strip().decode()) == (200, resource.digest)
    assert set(sans) == {"beta.txn.test", "www.beta.txn.test"}
    status, _ = probe.http_get(host.address, host.nginx.http_port, "beta.txn.test", "/x?y=1", 5)
    assert status == 301
    assert resource.plan(resource.observe(nginx.session))[0].verb.value == "noop"
    assert os.stat(resource.path).st_mode & 0o777 == 0o644


@needs_nginx
def test_config_failing_nginx_t_is_reverted_and_old_vhost_keeps_serving(
    nginx: PrivateNginx,
) -> None:
    good = VhostResource(nginx.spec("alpha", TENANTS["alpha"]), options=FAST)
    other = VhostResource(nginx.spec("beta", TENANTS["beta"]), options=FAST)
    _install(nginx, good)
    _install(nginx, other)
    before = Path(good.path).read_bytes()

    broken = good.content.replace("ssl_session_tickets off;", "ssl_session_tickets maybe;")
    with pytest.raises(StepFailed, match=r"config test failed.*ssl_session_tickets") as info:
        install_config(nginx.session.transport, nginx.host.nginx, good.path, broken.encode(),
                       good.check_live, FAST)
    assert "[emerg]" in info.value.message

    assert Path(good.path).read_bytes() == before
    assert good.check_live() is None
    assert other.check_live() is None


@needs_nginx
def test_new_file_failing_nginx_t_is_removed(nginx: PrivateNginx) -> None:
    good = VhostResource(nginx.spec("alpha", TENANTS["alpha"]), options=FAST)
    with pytest.raises(StepFailed, match="unknown directive"):
        install_config(nginx.session.transport, nginx.host.nginx, good.path,
                       b"server { listen 1; bogus_directive on; }\n", good.check_live, FAST)
    assert not Path(good.path).exists()


@needs_nginx
def test_config_passing_nginx_t_but_not_live_is_detected_and_reverted(
    nginx: PrivateNginx,
) -> None:
    good = VhostResource(nginx.spec("alpha", TENANTS["alpha"]), options=FAST)
    other = VhostResource(nginx.spec("beta", TENANTS["beta"]), options=FAST)
    _install(nginx, good)
    _install(nginx, other)
    before = Path(good.path).read_bytes()

    # Another process holds the port the new config wants: nginx -t passes (it does not
    # bind), the reload returns 0, and the old config keeps serving.
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind((nginx.host.address, 0))
        holder.listen(1)
        held = holder.getsockname()[1]
        moved = nginx.host.model_copy(
            update={"nginx": nginx.host.nginx.model_copy(update={"https_port": held})}
        )
        bad = VhostResource(nginx.spec("alpha", TENANTS["alpha"], host=moved), options=FAST)
        # "passed the test and reloaded but is not serving": only the live check catches it.
        with pytest.raises(StepFailed, match="passed the test and reloaded but is not serving"):
            _install(nginx, bad)

    assert Path(good.path).read_bytes() == before
    wait_until(lambda: good.check_live() is None, timeout=10, what="alpha serving again")
    assert other.check_live() is None


@needs_nginx
def test_run_killed_after_writing_before_reload_is_finished_by_rerun(
    nginx: PrivateNginx,
) -> None:
    resource = VhostResource(nginx.spec("alpha", TENANTS["alpha"]), options=FAST)
    # What a run killed right after the atomic write leaves: the file, never reloaded.
    Path(resource.path).write_text(resource.content)
    (step,) = resource.plan(resource.observe(nginx.session))
    assert step.verb.value == "reload"
    resource.apply(nginx.session, step)
    assert resource.check_live() is None
    assert resource.plan(resource.observe(nginx.session))[0].verb.value == "noop"


@needs_nginx
def test_vhost_without_certificate_is_refused_before_touching_nginx(nginx: PrivateNginx) -> None:
    resource = VhostResource(nginx.spec("gamma", ["gamma.txn.test"]), options=FAST)
    with pytest.raises(StepFailed, match=r"acme\.certificate step must succeed"):
        _install(nginx, resource)
    assert not Path(resource.path).exists()


# -- pure helpers (no nginx) ------------------------------------------------------------


class _FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _options(deadline: float = 1.0) -> tuple[InstallOptions, _FakeClock]:
    from omni.nginx import Clock

    fake = _FakeClock()
    clock = Clock(monotonic=fake.monotonic, sleep=fake.sleep)
    return InstallOptions(live_deadline_seconds=deadline, poll_interval_seconds=0.1,
                          consecutive_passes=3, clock=clock), fake


@pytest.mark.parametrize(
    ("answers", "live"),
    [
        (["no", "no", None, None, None], True),
        ([None, "old worker", None, None, None], True),
        ([None, "old worker"] * 20, False),  # never three in a row before the deadline
        (["no"] * 50, False),
    ],
)
def test_wait_live_needs_consecutive_passes_within_deadline(
    answers: list[str | None], live: bool
) -> None:
    from omni.nginx import wait_live

    options, _ = _options()
    feed = iter(answers + ["exhausted"] * 100)
    result = wait_live(lambda: next(feed), options)
    assert (result is None) is live


def test_nginx_error_line_prefers_emerg() -> None:
    from omni.nginx import nginx_error_line
    from omni.transport.base import CommandResult

    result = CommandResult(
        ("nginx", "-t"), 1, b"",
        b'nginx: [emerg] unknown directive "bogus" in /x.conf:3\n'
        b"nginx: configuration file /etc/nginx/nginx.conf test failed\n",
    )
    assert nginx_error_line(result) == 'nginx: [emerg] unknown directive "bogus" in /x.conf:3'
    assert nginx_error_line(CommandResult(("x",), 2, b"", b"")) == "exit status 2"
