"""Prometheus metrics, served on port 41002 as the seeds say.

Counts are read from the database at scrape time (nothing to keep in step); boot
durations are observed as VMs boot.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from hypr.daemon.service import Daemon

REGISTRY = CollectorRegistry()
VM_BOOT_SECONDS = Histogram(
    "hypr_vm_boot_seconds",
    "From hypervisor spawn to the guest agent reporting ready.",
    buckets=(0.25, 0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60, 120),
    registry=REGISTRY,
)
VM_STATES = ("created", "starting", "running", "stopping", "exited")


class StateCollector(Collector):
    """VMs by state, networks and published ports, as the database has them now."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Metric]:
        vms = GaugeMetricFamily("hypr_vms", "VMs by state.", labels=["state"])
        counts = dict.fromkeys(VM_STATES, 0)
        for vm in self.daemon.vms.all():
            counts[vm.state] = counts.get(vm.state, 0) + 1
        for state, count in counts.items():
            vms.add_metric([state], count)
        yield vms
        networks = GaugeMetricFamily("hypr_networks", "Networks.", labels=["internal"])
        nets = self.daemon.networks.all()
        networks.add_metric(["false"], sum(not n.internal for n in nets))
        networks.add_metric(["true"], sum(n.internal for n in nets))
        yield networks
        addresses = GaugeMetricFamily(
            "hypr_ip_allocations", "Addresses handed out, by network.", labels=["network"]
        )
        for net in nets:
            addresses.add_metric([net.name], self.daemon.networks.attached_count(net.id))
        yield addresses


def install(daemon: Daemon) -> CollectorRegistry:
    REGISTRY.register(StateCollector(daemon))
    return REGISTRY
