"""Fixtures for booting real microVMs: assets, a private network namespace, VM factory."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from guestvm import Netns, VmFactory, vm_support_missing

from hypr.sandbox import DEFAULT_ASSETS
from hypr_build.main import build


@pytest.fixture(scope="session")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built guest assets: $HYPR_ASSETS_DIR if set (brought up to date), else a temp dir."""
    missing = vm_support_missing()
    if missing:
        if os.environ.get("CI"):  # CI installs everything: a skip there would hide a defect
            pytest.fail(missing)
        pytest.skip(missing)
    out = Path(os.environ.get("HYPR_ASSETS_DIR", str(DEFAULT_ASSETS)))
    build(out)  # up to date already after bootstrap: the build skips unchanged steps
    return out


@pytest.fixture(scope="session")
def netns(assets: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Netns]:
    ns = Netns(f"hyprt-{uuid.uuid4().hex[:8]}", tmp_path_factory.mktemp("netns"))
    try:
        ns.setup()
        yield ns
    finally:
        ns.teardown()


@pytest.fixture(scope="session")
def vms(
    assets: Path, netns: Netns, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VmFactory]:
    factory = VmFactory(assets, netns, tmp_path_factory.mktemp("vms"))
    try:
        yield factory
    finally:
        factory.cleanup()
