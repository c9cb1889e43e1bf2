"""Dockerfile builds (issue 12): `hypr build` against Debian's `buildah bud` (vfs storage,
chroot isolation), the same Dockerfiles and contexts, side by side in one run, in a
namespace made for the run (buildah runs in it too, with storage of its own):

  * `copy`: a two-stage build that only COPYs (300 small files and an 8 MiB one into a
    builder stage, then COPY --from into the final one), from nothing (hypr --no-cache;
    buildah without --layers), then unchanged (hypr's cache; buildah --layers, warm).
    Goal: both at most 1.0x buildah.
  * `run`: five RUN steps (write files, compute a checksum), fresh then unchanged.
    Goal: none; the TCG cost is shown by `one RUN step` against the same command
    through `hypr exec` in a running VM (the build VM's boot is the difference).

Both start from the same busybox: hypr's built-in image, imported into buildah's storage
as docker.io/library/busybox:latest. Medians of --runs; ratios are hypr / buildah.

Usage: .venv/bin/python bench/build_bench.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from hypr.sandbox import DEFAULT_ASSETS, Hyprd, in_ns, throwaway_hyprd

COPY_DOCKERFILE = """\
FROM busybox AS assets
COPY small/ /assets/small/
COPY big.bin /assets/big.bin
COPY app.conf /etc/app.conf
FROM busybox
COPY --from=assets /assets /srv/assets
COPY --from=assets /etc/app.conf /etc/app.conf
CMD ["ls", "/srv/assets"]
"""

RUN_DOCKERFILE = """\
FROM busybox
RUN mkdir -p /data && for i in $(seq 1 200); do echo $i > /data/f$i; done
RUN cat /data/f* | md5sum > /data/sum
RUN rm /data/f1 /data/f2 && echo removed > /data/log
RUN echo step4 >> /data/log
RUN ls /data | wc -l > /data/count
"""


def make_context(root: Path, dockerfile: str) -> Path:
    ctx = root / f"ctx-{len(list(root.iterdir()))}"
    (ctx / "small").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    for i in range(300):
        (ctx / "small" / f"file{i:03}.txt").write_text(f"small file {i}\n" * 8)
    (ctx / "big.bin").write_bytes(os.urandom(8 << 20))
    (ctx / "app.conf").write_text("key=value\n")
    return ctx


class Buildah:
    def __init__(self, netns: str, root: Path) -> None:
        self.netns = netns
        self.base = ["buildah", "--root", str(root / "storage"), "--runroot", str(root / "run"),
                     "--storage-driver", "vfs"]  # fmt: skip

    def __call__(self, *args: str) -> str:
        return in_ns(self.netns, *self.base, *args).stdout.strip()

    def import_busybox(self, work: Path) -> None:
        rootfs = work / "rootfs.tar"
        with rootfs.open("wb") as out:
            subprocess.run(["sqfs2tar", str(DEFAULT_ASSETS / "images/busybox/rootfs.squashfs")],
                           stdout=out, check=True)  # fmt: skip
        ctr = self("from", "scratch")
        self("add", ctr, str(rootfs), "/")
        self("config", "--cmd", "sh", ctr)
        self("commit", "-q", ctr, "docker.io/library/busybox:latest")
        self("rm", ctr)

    def build(self, ctx: Path, tag: str, layers: bool) -> None:
        args = ["bud", "--pull=never", "--isolation", "chroot", "-q", "-t", tag]
        self(*args, *(["--layers"] if layers else []), str(ctx))


def hypr_build(hyprd: Hyprd, ctx: Path, tag: str, cache: bool) -> None:
    args = ["build", "-q", "-t", tag, *([] if cache else ["--no-cache"]), str(ctx)]
    result = hyprd.hypr(*args, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"hypr build failed: {result.stderr}")


def timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values)


def compare(name: str, hypr: list[float], buildah: list[float], goal: str) -> None:
    h, b = median(hypr), median(buildah)
    print(f"{name:<28} hypr {h:7.2f} s   buildah {b:7.2f} s   ratio {h / b:5.2f}x   ({goal})")


def bench(runs: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="build-bench-"))
    try:
        with throwaway_hyprd() as hyprd:
            buildah = Buildah(hyprd.netns, work / "buildah")
            buildah.import_busybox(work)
            contexts = work / "contexts"
            contexts.mkdir()
            cases = {"copy": make_context(contexts, COPY_DOCKERFILE),
                     "run": make_context(contexts, RUN_DOCKERFILE)}  # fmt: skip
            hypr_build(hyprd, cases["run"], "warm:up", cache=False)  # accelerator probe
            for name, ctx in cases.items():
                side_by_side(hyprd, buildah, name, ctx, runs)
            tcg_cost(hyprd, contexts, runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def side_by_side(hyprd: Hyprd, buildah: Buildah, name: str, ctx: Path, runs: int) -> None:
    """One case from nothing, then unchanged, each side `runs` times, alternating."""
    fresh: dict[str, list[float]] = {"hypr": [], "buildah": []}
    cached: dict[str, list[float]] = {"hypr": [], "buildah": []}
    for _ in range(runs):
        fresh["hypr"].append(timed(lambda: hypr_build(hyprd, ctx, name, False)))
        fresh["buildah"].append(timed(lambda: buildah.build(ctx, name, False)))
    buildah.build(ctx, name, True)  # fill buildah's layer cache
    for _ in range(runs):
        cached["hypr"].append(timed(lambda: hypr_build(hyprd, ctx, name, True)))
        cached["buildah"].append(timed(lambda: buildah.build(ctx, name, True)))
    goal = "goal <= 1.0x" if name == "copy" else "no goal: TCG"
    compare(f"{name}: from nothing", fresh["hypr"], fresh["buildah"], goal)
    compare(f"{name}: unchanged", cached["hypr"], cached["buildah"], "goal <= 1.0x")


def tcg_cost(hyprd: Hyprd, contexts: Path, runs: int) -> None:
    """One RUN step in a build against the same command by exec in a running VM."""
    command = "for i in $(seq 1 200); do echo $i > /tmp/f$i; done"
    ctx = contexts / "one-run"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM busybox\nRUN {command}\n")
    vm = hyprd.ok("run", "-d", "busybox", "sleep", "3600").strip()
    try:
        step = [timed(lambda: hypr_build(hyprd, ctx, "one:run", False)) for _ in range(runs)]
        execs = [timed(lambda: hyprd.ok("exec", vm, "sh", "-c", command)) for _ in range(runs)]
    finally:
        hyprd.ok("rm", "-f", vm)
    s, e = median(step), median(execs)
    print(f"{'one RUN step (build)':<28} {s:7.2f} s   same command by exec in a running VM "
          f"{e:7.2f} s   build VM boot, layer capture and store: {s - e:5.2f} s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("buildah") is None:
        sys.exit("build_bench: buildah is not installed (apt-get install buildah)")
    bench(args.runs)


if __name__ == "__main__":
    main()
