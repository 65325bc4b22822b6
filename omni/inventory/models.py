"""Pydantic models for the inventory files (the trust boundary for on-disk config).

``hosts.yaml`` holds the servers; ``tenants/<slug>.yaml`` one tenant each. Paths in host
settings are paths on that server. Models are frozen: inside omni they are read-only.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from omni import validation as v

_ABS_PATH = re.compile(r"^/[A-Za-z0-9._/@+-]*$")


def _check_remote_path(value: str) -> str:
    if not _ABS_PATH.fullmatch(value) or "/../" in value + "/" or "//" in value:
        raise ValueError("must be an absolute path of [A-Za-z0-9._/@+-] without '..'")
    return value


def _check_host_key(value: str) -> str:
    parts = value.split()
    if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-sha2-")):
        raise ValueError("must be an OpenSSH public key line: '<type> <base64> [comment]'")
    return value


RemotePath = Annotated[str, AfterValidator(_check_remote_path)]
Slug = Annotated[str, AfterValidator(v.check_slug)]
HostName = Annotated[str, AfterValidator(v.check_host_name)]
Domain = Annotated[str, AfterValidator(v.check_domain)]
Image = Annotated[str, AfterValidator(v.check_image)]
Email = Annotated[str, AfterValidator(v.check_email)]
Address = Annotated[str, AfterValidator(v.check_address)]
LoopbackAddress = Annotated[str, AfterValidator(v.check_loopback)]
HostKey = Annotated[str, AfterValidator(_check_host_key)]
Port = Annotated[int, Field(ge=1, le=65535)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PortRange(_Model):
    start: Port
    end: Port

    @model_validator(mode="after")
    def _ordered(self) -> PortRange:
        if self.end < self.start:
            raise ValueError("end must be >= start")
        return self

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.start <= port <= self.end


class DumpRetention(_Model):
    """Which of a tenant's dumps in ``dump_dir`` survive pruning: the newest ``keep``, and
    anything younger than ``keep_days``."""

    keep: int = Field(default=5, ge=1, le=1000)
    keep_days: int = Field(default=14, ge=0, le=3650)


class PostgresSettings(_Model):
    """How omni reaches the host's Postgres: through an SSH port forward to host:port."""

    host: Address = "127.0.0.1"
    port: Port = 5432
    admin_user: str = Field(default="postgres", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    # The admin password lives on the server (mode 0600), read over SSH at use time,
    # so no database secret sits in the inventory or in CI variables.
    admin_password_file: RemotePath = "/etc/omni/postgres-admin.password"  # noqa: S105
    dump_dir: RemotePath = "/var/backups/omni"
    dump_retention: DumpRetention = DumpRetention()
    # What tenants' DATABASE_URL asks for. Tenants reach Postgres on their own host, so
    # TLS is off by default (Medusa otherwise forces TLS for any non-127.0.0.1 address).
    sslmode: Literal["disable", "require", "verify-full"] = "disable"
    # A new tenant's database is copied from a migrated template database of its image
    # (built once per image on the host); false: migrate every new database instead.
    template_databases: bool = True


class DockerSettings(_Model):
    socket: RemotePath = "/var/run/docker.sock"
    cli: RemotePath = "/usr/bin/docker"


class NginxSettings(_Model):
    sites_dir: RemotePath = "/etc/nginx/sites-enabled"
    test_command: list[str] = Field(default_factory=lambda: ["nginx", "-t"])
    reload_command: list[str] = Field(default_factory=lambda: ["nginx", "-s", "reload"])
    listen_address: Address | None = None  # None: listen on all addresses
    http_port: Port = 80
    https_port: Port = 443
    certs_dir: RemotePath = "/etc/omni/certs"


class AcmeSettings(_Model):
    directory_url: str = Field(
        default="https://acme-v02.api.letsencrypt.org/directory", pattern=r"^https://\S+$"
    )
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")
    webroot: RemotePath = "/var/www/acme"
    account_key_file: RemotePath = "/etc/omni/acme/account.json"
    # A CA bundle (on the machine running omni) to trust the ACME server's own TLS;
    # the lab's Pebble needs it, Let's Encrypt does not.
    ca_bundle: str | None = None
    renew_before_days: int = Field(default=30, ge=1, le=90)


class ContainerLimits(_Model):
    """What each tenant container may use on a shared host (Medusa takes ~350 MiB at rest)."""

    app_memory_mb: int = Field(default=1024, ge=256, le=65536)
    redis_memory_mb: int = Field(default=384, ge=64, le=65536)
    gateway_memory_mb: int = Field(default=64, ge=16, le=4096)  # each of the two socat gateways
    cpu_shares: int = Field(default=1024, ge=2, le=262144)  # relative weight, 1024 = normal
    log_max_size_mb: int = Field(default=10, ge=1, le=1024)
    log_max_files: int = Field(default=3, ge=1, le=100)


class HealthSettings(_Model):
    path: str = Field(default="/health", pattern=r"^/[A-Za-z0-9._/-]*$")
    deadline_seconds: float = Field(default=120.0, gt=0, le=1800)
    # A CA bundle (on the machine running omni) to verify tenants' certificates with;
    # None trusts the system store. The lab points it at Pebble's issuing root.
    ca_bundle: str | None = None


class BackupRetention(_Model):
    """restic's ``forget --keep-daily/--keep-weekly/--keep-monthly``, per tenant."""

    daily: int = Field(default=7, ge=0, le=3650)
    weekly: int = Field(default=4, ge=0, le=520)
    monthly: int = Field(default=12, ge=0, le=1200)

    @model_validator(mode="after")
    def _keeps_something(self) -> BackupRetention:
        if not (self.daily or self.weekly or self.monthly):
            raise ValueError("at least one of daily, weekly, monthly must be above 0")
        return self


def _check_repository(value: str) -> str:
    if not value or any(c.isspace() for c in value) or "," in value:
        raise ValueError("must be a restic repository string without spaces or commas")
    authority = value.partition("://")[2].split("/", 1)[0]
    if "@" in authority and ":" in authority.rsplit("@", 1)[0]:
        # A password in the URL would reach argv and logs: restic reads it from the
        # environment or a file instead (see README, Backups).
        raise ValueError("must not carry a password (user:password@); keep secrets in files")
    return value


class BackupSettings(_Model):
    """Where and how the host's tenants are backed up with restic (see omni.backup.restic).

    ``repository`` is any restic repository string (``sftp:user@host:/path``,
    ``s3:...``); ``password_file`` (0600, on the host) holds the repository password.
    For ``sftp:`` repositories restic runs the host's ``ssh`` with ``identity`` (on the
    host) and only the key pinned in ``known_hosts`` (on the host): never trust-on-first-use.
    """

    repository: Annotated[str, AfterValidator(_check_repository)]
    password_file: RemotePath
    retention: BackupRetention = BackupRetention()
    known_hosts: RemotePath | None = None
    identity: RemotePath | None = None
    # restic's local cache on the host (None: restic's default, ~/.cache/restic).
    cache_dir: RemotePath | None = None


class Host(_Model):
    name: HostName
    address: Address
    port: Port = 22
    # "local": omni runs on this server itself (subprocess instead of SSH).
    transport: Literal["ssh", "local"] = "ssh"
    user: str = Field(default="root", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    identity: str | None = None  # private key file on the machine running omni
    host_keys: list[HostKey] = Field(default_factory=list)
    app_ports: PortRange = PortRange(start=9000, end=9499)
    redis_ports: PortRange = PortRange(start=6400, end=6899)
    # Where the tenants' app ports are published for nginx: a loopback address only.
    bind_address: LoopbackAddress = "127.0.0.1"
    # Tenants worked on at once on this host by commands that change them (migrate-all,
    # deploy, restart, backup...), and by those that only look (health-check).
    concurrency: int = Field(default=4, ge=1, le=64)
    check_concurrency: int = Field(default=16, ge=1, le=64)
    state_dir: RemotePath = "/var/lib/omni"
    redis_image: Image = "redis:7-bookworm"
    # socat and omni-gateway (images/gateway): each tenant's network gateway.
    gateway_image: Image = "omni/gateway:1"
    # The uid (and gid) tenant Redis containers run as; their 0600 config is owned by it.
    redis_uid: int = Field(default=999, ge=1, le=2**31 - 1)
    postgres: PostgresSettings = PostgresSettings()
    docker: DockerSettings = DockerSettings()
    nginx: NginxSettings = NginxSettings()
    acme: AcmeSettings
    health: HealthSettings = HealthSettings()
    limits: ContainerLimits = ContainerLimits()
    # Offsite backups (``omni backup``); None: this host's tenants are not backed up.
    backup: BackupSettings | None = None

    @model_validator(mode="after")
    def _ssh_needs_pins(self) -> Host:
        if self.transport == "ssh" and not self.host_keys:
            raise ValueError("host_keys: at least one pinned key is required for ssh hosts")
        return self

    @model_validator(mode="after")
    def _ranges_disjoint(self) -> Host:
        if self.app_ports.start <= self.redis_ports.end and (
            self.redis_ports.start <= self.app_ports.end
        ):
            raise ValueError("app_ports and redis_ports must not overlap")
        return self


class HostsFile(_Model):
    version: int = Field(default=1, ge=1, le=1)
    hosts: dict[HostName, Host]

    @model_validator(mode="before")
    @classmethod
    def _name_hosts(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("hosts"), dict):
            data = dict(data)
            for name, body in data["hosts"].items():
                if isinstance(body, dict) and body.get("name", name) != name:
                    raise ValueError(
                        f"hosts.{name}.name: {body['name']!r} differs from the key it is "
                        f"listed under ({name!r}); drop it or make them equal"
                    )
            data["hosts"] = {
                name: ({**body, "name": name} if isinstance(body, dict) else body)
                for name, body in data["hosts"].items()
            }
        return data


class Tenant(_Model):
    slug: Slug
    host: HostName
    domains: list[Domain] = Field(min_length=1, max_length=20)
    image: Image
    app_port: Port | None = None  # allocated on first create, then kept; the live release's
    # Blue/green: where the next release starts beside the live one (allocated from
    # ``app_ports`` on the first deploy); a successful deploy swaps it with ``app_port``.
    standby_app_port: Port | None = None
    redis_port: Port | None = None
    migrate_command: list[str] = Field(default_factory=lambda: ["medusa", "db:migrate"])
    # What the image is. "medusa": its migrations run (create, migrate-all, deploy) and the
    # shop is onboarded (admin user, publishable key). "plain": any HTTP app that serves
    # ``health.path`` on $HOST:$PORT (e.g. the lab's benchmark stand-in): omni runs no
    # migrations and no onboarding; everything else (database, Redis, vhost, certificate,
    # health) is the same.
    app_kind: Literal["medusa", "plain"] = "medusa"
    # The shop owner's Medusa admin login; create invites them (see omni.resources.admin_user).
    admin_email: Email | None = None
    env: dict[Annotated[str, AfterValidator(v.check_env_key_not_reserved)],
              Annotated[str, AfterValidator(v.check_env_value)]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique_domains(self) -> Tenant:
        if len(set(self.domains)) != len(self.domains):
            raise ValueError("domains must not repeat")
        return self
