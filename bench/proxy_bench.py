"""The reverse proxy by subdomain (issue 14): requests per second through the proxy
(`Host: web.hypr.localhost` on 127.0.0.1:41005, HAProxy) against the same server reached
directly at the VM's address, side by side in one run, with Debian's `wrk` in hyprd's
namespace. The server is busybox httpd in a busybox VM, serving a 1 KiB file.

Rounds alternate direct and proxied, so that a change in the machine's load hits both;
medians of --rounds. Goal: the proxy at least 0.8x direct.

Usage: .venv/bin/python bench/proxy_bench.py [--rounds N] [--seconds S] [--connections C]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics

from hypr.sandbox import Hyprd, in_ns, throwaway_hyprd, wait_for

SERVE = (
    "mkdir -p /www && head -c 1024 /dev/zero | tr '\\0' x > /www/index.html"
    " && httpd -f -p 80 -h /www"
)
HOST = "web.hypr.localhost"
PROXY = "http://127.0.0.1:41005/"


def wrk(hyprd: Hyprd, url: str, seconds: int, connections: int, host: str | None) -> float:
    """Requests per second that wrk got, failing if any answer was not a 2xx."""
    headers = ["-H", f"Host: {host}"] if host else []
    out = in_ns(
        hyprd.netns, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", *headers, url
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match.group(1))


def answers(hyprd: Hyprd, url: str, host: str | None) -> bool:
    args = ["curl", "-sf", "-m", "5", *(["-H", f"Host: {host}"] if host else []), url]
    return in_ns(hyprd.netns, *args, check=False).returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    with throwaway_hyprd("hyprpx") as hyprd:
        hyprd.ok("run", "-d", "--name", "web", "--expose", "80", "busybox", "sh", "-c", SERVE)
        address = json.loads(hyprd.ok("inspect", "web"))[0]["guest_ip"]
        direct = f"http://{address}:80/"
        wait_for(lambda: answers(hyprd, direct, None) and answers(hyprd, PROXY, HOST), 120)
        runs: dict[str, list[float]] = {"direct": [], "proxy": []}
        for _ in range(args.rounds):
            runs["direct"].append(wrk(hyprd, direct, args.seconds, args.connections, None))
            runs["proxy"].append(wrk(hyprd, PROXY, args.seconds, args.connections, HOST))
    p50 = {name: statistics.median(values) for name, values in runs.items()}
    for name, values in runs.items():
        listed = " ".join(f"{v:.0f}" for v in values)
        print(f"{name:7}  p50 {p50[name]:8.0f} req/s   rounds {listed}")
    ratio = p50["proxy"] / p50["direct"]
    print(f"through the proxy: {ratio:.2f}x direct (goal >= 0.8x)")


if __name__ == "__main__":
    main()
