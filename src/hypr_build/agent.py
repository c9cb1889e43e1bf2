"""The guest agent: kestrel's C sources compiled into one static musl binary."""

from __future__ import annotations

import shutil
from pathlib import Path

from hypr_build.common import BuildError, Stamps, digest, run, step

AGENT_SOURCES = Path(__file__).parent / "kestrel"
CFLAGS = ("-static", "-Os", "-Wall", "-Wextra", "-Werror", "-s")


def agent_sources() -> list[Path]:
    """The translation units, in a fixed order (the build must be reproducible)."""
    return sorted(AGENT_SOURCES.glob("*.c"))


def build_agent(cache: Path, stamps: Stamps) -> Path:
    """Compile kestrel with musl, static, size-optimized, stripped."""
    binary = cache / "kestrel"
    cc = shutil.which("musl-gcc")
    if cc is None:
        raise BuildError("musl-gcc not found (apt-get install musl-tools)")
    sources = agent_sources()
    files = sorted([*sources, *AGENT_SOURCES.glob("*.h")])
    inputs = digest(
        *(f"{p.name}\0" + p.read_text() for p in files), *CFLAGS, run([cc, "-dumpversion"])
    )

    def work() -> str:
        tmp = binary.with_suffix(".tmp")
        run([cc, *CFLAGS, "-o", str(tmp), *(str(s) for s in sources)])
        tmp.replace(binary)
        return f"{binary.stat().st_size} bytes from {len(sources)} files"

    step(stamps, "agent", inputs, [binary], work)
    return binary
