"""Recursive deletes are built from a slug: only exactly ``<root>/<slug>`` is accepted."""

from __future__ import annotations

import pytest

from omni.errors import InvalidInput
from omni.resources.removal import PathAbsent


@pytest.mark.parametrize(
    ("root", "slug"),
    [
        ("/", "acme"),                      # the filesystem root
        ("/var", "acme"),                   # too shallow
        ("var/lib/omni", "acme"),           # relative
        ("/var/lib/../..", "acme"),         # climbing out
        ("/var/lib/omni", ".."),
        ("/var/lib/omni", ""),
        ("/var/lib/omni", "acme/../../etc"),
        ("/var/lib/omni", "Acme"),
    ],
)
def test_anything_but_a_tenant_directory_under_a_root_is_refused(root: str, slug: str) -> None:
    with pytest.raises(InvalidInput, match="refusing to delete"):
        PathAbsent("tenant.state", root, slug)


def test_a_tenant_directory_is_exactly_root_slash_slug() -> None:
    assert PathAbsent("tenant.state", "/var/lib/omni/tenants", "acme").path == (
        "/var/lib/omni/tenants/acme")
    assert PathAbsent("x", "/etc/omni/certs/", "acme-outdoor").path == (
        "/etc/omni/certs/acme-outdoor")
