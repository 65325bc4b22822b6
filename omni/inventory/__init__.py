"""The inventory: hosts.yaml and tenants/<slug>.yaml, validated into frozen models."""

from omni.inventory.loader import (
    Inventory,
    InventoryReport,
    collect_inventory,
    load_inventory,
    save_tenant,
)
from omni.inventory.models import Host, Tenant

__all__ = [
    "Host",
    "Inventory",
    "InventoryReport",
    "Tenant",
    "collect_inventory",
    "load_inventory",
    "save_tenant",
]
