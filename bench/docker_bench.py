"""The Docker Engine API (issue 11), side by side in one run, in a namespace made for the run:

  * `run`: `docker run -d busybox sleep 3600` through hypr's Docker socket (the real `docker`
    CLI: create, wait, start) to exec-ready, against `hypr run -d busybox sleep 3600` to
    exec-ready; alternating runs, medians and the ratio. Exec-ready is the first exec that
    succeeds, probed the same way on both sides (`hypr exec VM true`; `--probe native` makes
    the Docker side probe with `docker exec VM true`). Goal: at most 1.05x.
  * `list`: with 50 VMs running (`-m 96m`, booted 10 at a time), 200 `GET /containers/json`
    through the Docker socket and 200 `GET /vms` through hypr's own socket, alternating, one
    keep-alive httpx client on each socket; latency p50 and p95, and the ratio.
    Goal: under 20 ms p50 for the Docker face.

Usage: .venv/bin/python bench/docker_bench.py [run|list|all] [--runs N] [--vms N] [--requests N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

from hypr.sandbox import Hyprd, sh, throwaway_hyprd

DOCKER_API = "/v1.44"  # what the docker CLI 28 negotiates down to with hypr


# --- run ----------------------------------------------------------------------------------


def docker_ok(hyprd: Hyprd, *args: str) -> str:
    result = hyprd.docker(*args)
    if result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {result.stderr}")
    return result.stdout


Probe = Callable[[Hyprd, str], bool]


def hypr_probe(hyprd: Hyprd, vm: str) -> bool:
    return hyprd.hypr("exec", vm, "true").returncode == 0


def docker_probe(hyprd: Hyprd, vm: str) -> bool:
    return hyprd.docker("exec", vm, "true").returncode == 0


def run_to_exec_ready(hyprd: Hyprd, face: str, probe: Probe) -> tuple[float, float]:
    """Seconds from the CLI's start to its return, and to the first exec that succeeds; the
    VM is removed after (not timed)."""
    argv = ("run", "-d", "busybox", "sleep", "3600")
    start = time.perf_counter()
    vm = (docker_ok(hyprd, *argv) if face == "docker" else hyprd.ok(*argv)).strip()
    returned = time.perf_counter() - start
    while not probe(hyprd, vm):
        pass  # both return once the agent answers; this is the first exec
    ready = time.perf_counter() - start
    hyprd.ok("rm", "-f", vm)
    return returned, ready


def bench_run(runs: int, native_probe: bool) -> None:
    probes = {"docker": docker_probe if native_probe else hypr_probe, "hypr": hypr_probe}
    times: dict[str, list[tuple[float, float]]] = {"docker": [], "hypr": []}
    with throwaway_hyprd() as hyprd:
        for face in ("hypr", "docker"):  # warm-up: the accelerator probe, caches
            run_to_exec_ready(hyprd, face, probes[face])
        for i in range(runs):
            order = ("docker", "hypr") if i % 2 == 0 else ("hypr", "docker")
            for face in order:
                times[face].append(run_to_exec_ready(hyprd, face, probes[face]))
    probe = "docker exec / hypr exec" if native_probe else "hypr exec on both"
    print(f"run -d busybox sleep 3600 to exec-ready ({probe}), {runs} runs each, alternating")
    medians = {}
    for face, label in (("docker", "docker run -d (Docker socket)"), ("hypr", "hypr run -d")):
        returned = statistics.median(t[0] for t in times[face])
        ready = statistics.median(t[1] for t in times[face])
        medians[face] = (returned, ready)
        runs_text = " ".join(f"{t[1] * 1000:.0f}" for t in times[face])
        print(f"  {label:30} p50 {ready * 1000:6.0f} ms  (CLI returned p50 {returned * 1000:5.0f})"
              f"   runs {runs_text}")  # fmt: skip
    ratio = medians["docker"][1] / medians["hypr"][1]
    returned_ratio = medians["docker"][0] / medians["hypr"][0]
    verdict = "met" if ratio <= 1.05 else "MISSED"
    print(f"  ratio docker / hypr to exec-ready {ratio:.2f}x (goal <= 1.05x: {verdict}); "
          f"to the CLI's return {returned_ratio:.2f}x")  # fmt: skip


# --- list ---------------------------------------------------------------------------------


def boot_vms(hyprd: Hyprd, count: int, at_once: int) -> float:
    """`count` VMs of 96 MiB sleeping, booted `at_once` at a time through hypr's API (what
    `hypr run -d -m 96m busybox sleep 3600` sends, without the CLI's 60 s read timeout: each
    batch boots slower than the last under TCG); seconds it took."""
    body = {"image": "busybox", "command": ["sleep", "3600"], "memory_mib": 96}
    start = time.perf_counter()

    def one(_: int) -> str:
        with hyprd.api() as api:
            answer = api.post("/vms", json=body)
        if answer.status_code != 201:
            raise RuntimeError(f"POST /vms: {answer.status_code} {answer.text}")
        return str(answer.json()["id"])

    vms: list[str] = []
    with ThreadPoolExecutor(at_once) as pool:
        while len(vms) < count:
            batch = time.perf_counter()
            vms += pool.map(one, range(min(at_once, count - len(vms))))
            print(f"  {len(vms)} VMs running (batch {time.perf_counter() - batch:.0f} s)",
                  file=sys.stderr, flush=True)  # fmt: skip
    assert len(set(vms)) == count
    return time.perf_counter() - start


def uds_client(socket: Path) -> httpx.Client:
    return httpx.Client(
        transport=httpx.HTTPTransport(uds=str(socket)), base_url="http://localhost", timeout=60
    )


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


Faces = dict[str, Callable[[], httpx.Response]]
FACES = (("docker", "GET /containers/json (Docker)"), ("hypr", "GET /vms (hypr)"))


def cpu_seconds(pid: int) -> float:
    """User and system time of a process so far (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(calls: Faces, requests: int, pid: int) -> dict[str, tuple[list[float], float]]:
    """Each face's latencies (seconds) and hyprd's CPU seconds in its requests, alternating."""
    lat: dict[str, list[float]] = {face: [] for face in calls}
    cpu = dict.fromkeys(calls, 0.0)
    for i in range(requests):
        for face in ("docker", "hypr") if i % 2 == 0 else ("hypr", "docker"):
            used = cpu_seconds(pid)
            start = time.perf_counter()
            answer = calls[face]()
            lat[face].append(time.perf_counter() - start)
            cpu[face] += cpu_seconds(pid) - used
            if answer.status_code != 200:
                raise RuntimeError(f"{face}: {answer.status_code} {answer.text}")
    return {face: (lat[face], cpu[face]) for face in calls}


@contextmanager
def guests_paused(hyprd: Hyprd) -> Iterator[int]:
    """SIGSTOP every QEMU of this daemon (in its namespace) and SIGCONT them after: the VMs
    stay in hyprd's tables, running, but no emulated guest competes for the cores."""
    pids = []
    for text in sh("ip", "netns", "pids", hyprd.netns, check=False).stdout.split():
        with contextlib.suppress(OSError):
            if Path(f"/proc/{text}/comm").read_text().startswith("qemu"):
                pids.append(int(text))
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        yield len(pids)
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def report(title: str, results: dict[str, tuple[list[float], float]], goal: bool) -> None:
    print(title)
    p50 = {}
    for face, label in FACES:
        lat, cpu = results[face]
        p50[face] = statistics.median(lat) * 1000
        p95 = percentile(lat, 95) * 1000
        print(f"  {label:30} p50 {p50[face]:7.2f} ms   p95 {p95:7.2f} ms   "
              f"hyprd CPU {cpu / len(lat) * 1000:5.2f} ms a request")  # fmt: skip
    verdict = "met" if p50["docker"] < 20 else "MISSED"
    judged = f"goal < 20 ms: {verdict}" if goal else "under 20 ms" if verdict == "met" else "over"
    print(f"  ratio docker / hypr p50 {p50['docker'] / p50['hypr']:.2f}x; "
          f"Docker p50 {p50['docker']:.2f} ms ({judged})")  # fmt: skip


def bench_list(vm_count: int, at_once: int, requests: int) -> None:
    with throwaway_hyprd() as hyprd:
        took = boot_vms(hyprd, vm_count, at_once)
        assert hyprd.proc is not None  # `ip netns exec` execs hyprd: the same process
        pid = hyprd.proc.pid
        docker_socket = hyprd.run_dir / "docker.sock"
        with uds_client(docker_socket) as docker, uds_client(hyprd.socket) as hypr:
            calls: Faces = {
                "docker": lambda: docker.get(f"{DOCKER_API}/containers/json"),
                "hypr": lambda: hypr.get("/vms"),
            }
            for face, call in calls.items():  # warm-up, and a check of what is answered
                answer = call()
                answer.raise_for_status()
                assert len(answer.json()) == vm_count, f"{face}: {len(answer.json())} listed"
                for _ in range(9):
                    call()
            live = measure(calls, requests, pid)
            with guests_paused(hyprd) as paused:
                quiet = measure(calls, requests, pid)
    print(f"{requests} list requests each, {vm_count} VMs running (booted {at_once} at a time "
          f"in {took:.0f} s), alternating, keep-alive")  # fmt: skip
    report("guests live (the goal's figure):", live, goal=True)
    report(f"the same {paused} guests paused (SIGSTOP), the daemon's own cost:", quiet, False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", default="all", choices=["run", "list", "all"])
    parser.add_argument("--runs", type=int, default=7, help="run -d runs of each face")
    parser.add_argument(
        "--probe", choices=["hypr", "native"], default="hypr",
        help="exec-ready probe: hypr exec on both sides, or each face's own CLI",
    )  # fmt: skip
    parser.add_argument("--vms", type=int, default=50, help="VMs running for the list")
    parser.add_argument("--at-once", type=int, default=10, help="VMs booting at a time")
    parser.add_argument("--requests", type=int, default=200, help="list requests of each face")
    args = parser.parse_args()
    if args.what in ("run", "all"):
        bench_run(args.runs, args.probe == "native")
    if args.what in ("list", "all"):
        bench_list(args.vms, args.at_once, args.requests)


if __name__ == "__main__":
    main()
