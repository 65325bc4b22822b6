"""``omni inventory check``: validate every inventory file and every cross-file rule."""

from __future__ import annotations

from pathlib import Path

from omni.errors import InventoryError
from omni.inventory.loader import collect_inventory
from omni.output.result import Result

COMMAND = "inventory check"


def inventory_check(inventory: Path) -> Result:
    """Read-only. Success carries counts; failure carries one error per problem (each a
    one-line message naming the file(s), field and rule) and exits INVALID_INPUT."""
    report = collect_inventory(inventory)
    data = {
        "path": str(inventory),
        "hosts": sorted(report.hosts or {}),
        "tenants": sorted(report.tenants),
        "problems": len(report.problems),
    }
    if report.problems:
        return Result.failure(COMMAND, [InventoryError(p) for p in report.problems], data=data)
    return Result.success(COMMAND, data=data)
