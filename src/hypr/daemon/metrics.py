"""Prometheus metrics, served on port 41002 as the seeds say.

Counts are read from the database at scrape time (nothing to keep in step); boot
durations are observed as VMs boot.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hypr.daemon.views import NetworkStats

REGISTRY = CollectorRegistry()
VM_BOOT_SECONDS = Histogram(
    "hypr_vm_boot_seconds",
    "From hypervisor spawn to the guest agent reporting ready.",
    buckets=(0.25, 0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60, 120),
    registry=REGISTRY,
)
VM_STATES = ("created", "starting", "running", "stopping", "sleeping", "exited")


class StateSource(Protocol):
    """What the collector reads at scrape time (the Daemon); a protocol, so that this
    module, which the VM manager imports, imports nothing above it."""

    def vm_states(self) -> list[str]: ...

    def network_stats(self) -> list[NetworkStats]: ...


class StateCollector(Collector):
    """VMs by state, networks and published ports, as the database has them now."""

    def __init__(self, source: StateSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        vms = GaugeMetricFamily("hypr_vms", "VMs by state.", labels=["state"])
        counts = dict.fromkeys(VM_STATES, 0)
        for state in self.source.vm_states():
            counts[state] = counts.get(state, 0) + 1
        for state, count in counts.items():
            vms.add_metric([state], count)
        yield vms
        networks = GaugeMetricFamily("hypr_networks", "Networks.", labels=["internal"])
        nets = self.source.network_stats()
        networks.add_metric(["false"], sum(not n.internal for n in nets))
        networks.add_metric(["true"], sum(n.internal for n in nets))
        yield networks
        addresses = GaugeMetricFamily(
            "hypr_ip_allocations", "Addresses handed out, by network.", labels=["network"]
        )
        for net in nets:
            addresses.add_metric([net.name], net.addresses)
        yield addresses


def install(source: StateSource) -> CollectorRegistry:
    REGISTRY.register(StateCollector(source))
    return REGISTRY
