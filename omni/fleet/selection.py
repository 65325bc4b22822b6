"""Which tenants a fleet command works on, checked before anything connects."""

from __future__ import annotations

from collections.abc import Sequence

from omni import validation
from omni.errors import InvalidInput
from omni.inventory.loader import Inventory
from omni.inventory.models import Tenant


def select_tenants(
    inventory: Inventory,
    slugs: Sequence[str] = (),
    *,
    host: str | None = None,
    every: bool = False,
    require_choice: bool = False,
) -> list[Tenant]:
    """The tenants named by ``slugs`` (in that order) or, with none named, every tenant
    (by host, then slug), narrowed to ``host`` when given. Pure.

    Raises ``InvalidInput`` for a malformed or unknown slug, an unknown host, a slug given
    twice, or, with ``require_choice``, when neither slugs nor ``every`` were given (a
    mutating roll over the whole fleet must be asked for with ``--all``).
    """
    if host is not None:
        inventory.host(host)  # unknown host -> InvalidInput naming the known ones
    if slugs and every:
        raise InvalidInput("--all: give tenant slugs or --all, not both", field="all")
    if require_choice and not slugs and not every:
        raise InvalidInput("SLUG: name the tenants, or pass --all for every tenant",
                           field="slug")
    seen: set[str] = set()
    chosen: list[Tenant] = []
    for slug in slugs:
        try:
            validation.check_slug(slug)
        except ValueError as exc:
            raise InvalidInput(f"SLUG {slug!r}: {exc}", field="slug") from None
        tenant = inventory.tenants.get(slug)
        if tenant is None:
            raise InvalidInput(
                f"SLUG: no tenant {slug!r} in {inventory.path}/tenants", field="slug"
            )
        if slug in seen:
            raise InvalidInput(f"SLUG: {slug!r} given twice", field="slug")
        seen.add(slug)
        chosen.append(tenant)
    if not slugs:
        chosen = sorted(inventory.tenants.values(), key=lambda t: (t.host, t.slug))
    if host is not None:
        chosen = [t for t in chosen if t.host == host]
    return chosen
