"""DNS benchmark (issue 4): hypr's per-network server against a plain dnsmasq.

In a namespace made for this run, a real hyprd starts the default network's dnsmasq; the
records of a few VMs are written into its hosts directory by the same function hyprd uses
when a VM starts (no VM boots). A plain dnsmasq, started here with default options and the
same records in a hosts file, listens on a bridge of its own in the same namespace, so that
the kernel takes the same path to both. dnsperf (4 clients, 10 s a run) asks both for
those names, four runs each in the order ABBA BAAB, so that a change of the machine's load
hits both alike; each is scored by its best run, the one least disturbed by whatever else
the machine runs (the medians are printed too).
Goal: hypr >= 0.9x plain.

Run: .venv/bin/python bench/dns_bench.py
"""

from __future__ import annotations

import re
import statistics
import tempfile
from ipaddress import IPv4Address
from pathlib import Path

from hypr.network.dns import DOMAIN, network_dir, write_record
from hypr.sandbox import Hyprd, create_netns, delete_netns, in_ns

RECORDS = 10
CLIENTS = 4
SECONDS = 10
ORDER = ("hypr", "plain", "plain", "hypr", "plain", "hypr", "hypr", "plain")
HYPR_SERVER = "10.88.0.1"  # the default network's gateway
PLAIN_SERVER = "10.99.0.1"  # on a bridge of its own, as hypr's is on the network's


def records() -> dict[str, IPv4Address]:
    return {f"vm{i}": IPv4Address("10.88.0.2") + i for i in range(RECORDS)}


def dnsperf(ns: str, server: str, queries: Path) -> float:
    """Queries per second; refuses a run that lost queries or got other answers."""
    out = in_ns(ns, "dnsperf", "-s", server, "-d", str(queries), "-c", str(CLIENTS),
                "-l", str(SECONDS)).stdout  # fmt: skip
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    qps = re.search(r"Queries per second:\s+([\d.]+)", out)
    all_ok = re.search(r"Response codes:\s+NOERROR \d+ \(100\.00%\)$", out, re.M)
    if lost is None or qps is None or int(lost.group(1)) or all_ok is None:
        raise RuntimeError(f"dnsperf against {server} went wrong:\n{out}")
    return float(qps.group(1))


def check_answers(ns: str, server: str) -> None:
    for name, address in records().items():
        for query in (name, f"{name}.{DOMAIN}"):
            got = in_ns(ns, "dig", "+short", f"@{server}", query).stdout.split()
            if got != [str(address)]:
                raise RuntimeError(f"{server} answers {query} with {got}, not {address}")


def main() -> None:
    ns = create_netns("hyprbench")
    try:
        with tempfile.TemporaryDirectory(prefix="hypr-dns-bench-") as tmp:
            root = Path(tmp)
            root.chmod(0o755)  # the plain dnsmasq reads its hosts file as nobody
            daemon = Hyprd(ns, root)
            daemon.start()
            with daemon.api() as api:
                bridge = api.get("/networks/bridge").json()["Id"]
            hosts_dir = network_dir(daemon.run_dir, bridge) / "hosts"
            for index, (name, address) in enumerate(records().items()):
                write_record(hosts_dir, f"bench{index}", [name], address)
            hosts_file = root / "plain.hosts"
            hosts_file.write_text("".join(p.read_text() for p in sorted(hosts_dir.iterdir())))

            in_ns(ns, "ip", "link", "add", "plain0", "type", "bridge")
            in_ns(ns, "ip", "addr", "add", f"{PLAIN_SERVER}/24", "dev", "plain0")
            in_ns(ns, "ip", "link", "set", "plain0", "up")
            in_ns(ns, "dnsmasq", "--bind-interfaces", f"--listen-address={PLAIN_SERVER}",
                  f"--addn-hosts={hosts_file}", f"--pid-file={root / 'plain.pid'}")  # fmt: skip
            check_answers(ns, HYPR_SERVER)
            check_answers(ns, PLAIN_SERVER)

            queries = root / "queries"
            queries.write_text("".join(f"{name}.{DOMAIN} A\n{name} A\n" for name in records()))
            results: dict[str, list[float]] = {"hypr": [], "plain": []}
            for which in ORDER:
                server = HYPR_SERVER if which == "hypr" else PLAIN_SERVER
                results[which].append(dnsperf(ns, server, queries))
            daemon.stop()
    finally:
        delete_netns(ns)

    print(f"dnsperf, {CLIENTS} clients, {SECONDS} s a run, {2 * RECORDS} names of {RECORDS} VMs")
    for which, label in (("hypr", "hypr per-network dnsmasq"), ("plain", "plain dnsmasq")):
        runs = results[which]
        each = ", ".join(f"{q:,.0f}" for q in runs)
        median = statistics.median(runs)
        print(f"{label:27} best {max(runs):8,.0f} queries/s   median {median:8,.0f}   ({each})")
    ratio = max(results["hypr"]) / max(results["plain"])
    print(f"ratio hypr / plain          {ratio:10.2f}x   (goal >= 0.90x: "
          f"{'met' if ratio >= 0.9 else 'MISSED'})")  # fmt: skip


if __name__ == "__main__":
    main()
