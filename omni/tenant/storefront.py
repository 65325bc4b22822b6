"""The tenant's storefront facts kept on its host: ``<state_dir>/tenants/<slug>/storefront.json``.

Written by the ``medusa.publishable_key`` resource, read by ``tenant show``. Its content is
public by design (a publishable key goes into every storefront page)::

    {"publishable_key": "pk_...", "sales_channel_id": "sc_..."}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from omni.inventory.models import Host

if TYPE_CHECKING:
    from omni.transport.base import Transport


@dataclass(frozen=True)
class Storefront:
    publishable_key: str
    sales_channel_id: str

    def to_json(self) -> bytes:
        data = {"publishable_key": self.publishable_key, "sales_channel_id": self.sales_channel_id}
        return json.dumps(data, indent=2, sort_keys=True).encode() + b"\n"


def storefront_path(host: Host, slug: str) -> str:
    return f"{host.state_dir}/tenants/{slug}/storefront.json"


def read_storefront(transport: Transport, path: str) -> Storefront | None:
    """The recorded facts, or None when the file is absent or not in this format."""
    raw = transport.read_file(path)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        return Storefront(str(data["publishable_key"]), str(data["sales_channel_id"]))
    except (ValueError, KeyError, TypeError):
        return None
