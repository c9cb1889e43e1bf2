"""Image pull benchmark (issue 9), side by side in one run, in a namespace made for the run
with Debian's docker-registry holding the test Debian image (3 layers, ~57 MB):

  * `hypr pull REF` (CLI, an empty store) to a runnable image: every layer downloaded,
    verified, turned into squashfs and recorded;
  * the chain of Debian's tools for the same result: `skopeo copy docker://REF oci:DIR`, then
    for each layer `zcat blob | tar2sqfs` (the same lz4 squashfs hypr makes), one after the
    other as a shell script would;
  * a re-pull with every layer present: through the API (`POST /images/pull`, read to the
    end: no CLI start-up) and through the CLI.
Goals: hypr at most 1.0x the chain; a re-pull under 100 ms.

Usage: .venv/bin/python bench/image_bench.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from debian_registry import debian_registry, runs_text
from hypr.images.layers import SQUASHFS_COMPRESSION
from hypr.sandbox import Hyprd, in_ns

CHAIN_GOAL = 1.0
REPULL_GOAL_MS = 100.0


def hypr_pull(daemon: Hyprd, ref: str) -> float:
    """Seconds of a `hypr pull` into an empty store; the image is removed after."""
    start = time.perf_counter()
    daemon.ok("pull", "-q", ref)
    took = time.perf_counter() - start
    daemon.ok("rmi", ref)
    assert not list((daemon.data_dir / "images" / "layers").iterdir())
    return took


def chain(ns: str, ref: str, work: Path) -> float:
    """Seconds of skopeo copy plus a tar2sqfs per layer; the result is removed after."""
    layout, out = work / "oci", work / "sqfs"
    out.mkdir()
    start = time.perf_counter()
    in_ns(ns, "skopeo", "--insecure-policy", "copy", "-q", "--src-tls-verify=false",
          f"docker://{ref}", f"oci:{layout}:latest")  # fmt: skip
    index = json.loads((layout / "index.json").read_text())
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_text())
    for i, layer in enumerate(manifest["layers"]):
        blob = blobs / layer["digest"][7:]
        sqfs = out / f"{i}.squashfs"
        subprocess.run(
            f"zcat {blob} | tar2sqfs -q -f -c {SQUASHFS_COMPRESSION} {sqfs}", shell=True, check=True
        )
    took = time.perf_counter() - start
    shutil.rmtree(layout)
    shutil.rmtree(out)
    return took


def repull_api(daemon: Hyprd, ref: str, runs: int) -> list[float]:
    times = []
    with daemon.api() as api:
        for _ in range(runs):
            start = time.perf_counter()
            response = api.post("/images/pull", json={"reference": ref})
            lines = response.text.splitlines()
            times.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200 and "aux" in json.loads(lines[-1]), lines
            assert any("Image is up to date" in line for line in lines), lines
    return times


def repull_cli(daemon: Hyprd, ref: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        daemon.ok("pull", "-q", ref)
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="pulls of each kind")
    parser.add_argument("--repulls", type=int, default=20)
    args = parser.parse_args()
    with debian_registry() as bench:
        daemon, ref, ns = bench.daemon, bench.ref, bench.netns
        size = sum(p.stat().st_size for p in bench.registry.storage.rglob("data"))
        hypr_s, chain_s = [], []
        for i in range(args.runs):  # alternate, so neither always has warmer caches
            work = bench.root / f"chain{i}"
            work.mkdir()
            if i % 2:
                hypr_s.append(hypr_pull(daemon, ref))
                chain_s.append(chain(ns, ref, work))
            else:
                chain_s.append(chain(ns, ref, work))
                hypr_s.append(hypr_pull(daemon, ref))
        daemon.ok("pull", "-q", ref)
        api_ms = repull_api(daemon, ref, args.repulls)
        cli_ms = repull_cli(daemon, ref, args.repulls)
    h, c = statistics.median(hypr_s), statistics.median(chain_s)
    ratio = h / c
    print(f"image: {ref} ({size / 1e6:.1f} MB in the registry), {args.runs} runs each")
    print(f"pull: hypr pull (CLI)                  p50 {h:7.2f} s   runs {runs_text(hypr_s)}")
    print(f"pull: skopeo copy + zcat|tar2sqfs      p50 {c:7.2f} s   runs {runs_text(chain_s)}")
    met = "met" if ratio <= CHAIN_GOAL else "MISSED"
    print(f"pull: ratio hypr / chain               {ratio:.2f}x  (goal <= {CHAIN_GOAL}x: {met})")
    a, b = statistics.median(api_ms), statistics.median(cli_ms)
    met = "met" if a < REPULL_GOAL_MS else "MISSED"
    print(f"re-pull, all layers present (API)      p50 {a:7.1f} ms  p95 {_p95(api_ms):7.1f} ms"
          f"  (goal < {REPULL_GOAL_MS:.0f} ms: {met})")  # fmt: skip
    print(f"re-pull, all layers present (CLI)      p50 {b:7.1f} ms  p95 {_p95(cli_ms):7.1f} ms")


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


if __name__ == "__main__":
    main()
