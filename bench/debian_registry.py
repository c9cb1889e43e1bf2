"""What the image benchmarks share: a namespace made for the run, Debian's docker-registry in
it holding the test Debian image, and a real hyprd beside it; all removed afterwards."""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' image builders

from tests.oci_images import debian_image
from tests.registry import Registry, start_registry

from hypr.sandbox import Hyprd, create_netns, delete_netns


@dataclass(frozen=True)
class Bench:
    netns: str
    root: Path  # a scratch directory for the benchmark's own files
    registry: Registry
    daemon: Hyprd
    ref: str  # the Debian image's reference in the registry


@contextlib.contextmanager
def debian_registry() -> Iterator[Bench]:
    layout = debian_image()
    ns = create_netns("hyprb")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            registry = start_registry(ns, root / "registry")
            ref = registry.push(layout, "latest", "bench/debian")
            daemon = Hyprd(ns, root / "hyprd")
            daemon.start()
            try:
                yield Bench(ns, root, registry, daemon, ref)
            finally:
                daemon.stop()
                registry.stop()
    finally:
        delete_netns(ns)


def runs_text(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)
