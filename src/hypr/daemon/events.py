"""The daemon's event bus: what happened to VMs and networks, for Docker's `/events`.

The bus follows the VM and network managers as one more observer: the lifecycle code does
not call it, it is told. It keeps the last KEPT events, so that a client that asks for the
events `since` a moment ago gets them, and hands each new event to every subscriber's queue;
a subscriber that falls far behind loses its oldest events rather than grow without bound.
Events use Docker's vocabulary: containers (VMs) are created, start, die, stop (when asked
to) and are destroyed; networks are created and destroyed, and VMs connect to a network
when they start and disconnect from it when they stop, as Docker's endpoints do.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from hypr.state.networks import NetworkRecord
from hypr.state.vms import PublishRequest, VmRecord

KEPT = 1024
QUEUE_LIMIT = 4096


@dataclass(frozen=True)
class Event:
    seq: int  # increases by one per event: what a subscriber already has from `recent`
    type: str  # container | network
    action: str
    actor_id: str
    attributes: dict[str, str]
    time_nano: int


class EventBus:
    """Records events and fans them out; a VmObserver and a NetworkObserver."""

    def __init__(self, find_network: Callable[[str], NetworkRecord | None]) -> None:
        self._find_network = find_network
        self._recent: deque[Event] = deque(maxlen=KEPT)
        self._subscribers: set[asyncio.Queue[Event]] = set()
        self._seq = itertools.count(1)
        self._started: set[str] = set()  # VMs whose start was reported and no die yet

    # --- reading -------------------------------------------------------------------------

    def recent(self, since_nano: int) -> list[Event]:
        """The kept events at or after `since_nano`, oldest first."""
        return [event for event in self._recent if event.time_nano >= since_nano]

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[Event]]:
        """A queue that gets every event published while the block runs."""
        queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_LIMIT)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    def publish(self, type: str, action: str, actor_id: str, attributes: dict[str, str]) -> None:
        event = Event(next(self._seq), type, action, actor_id, attributes, time.time_ns())
        self._recent.append(event)
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()  # too slow a reader: it loses the oldest
            queue.put_nowait(event)

    # --- VmObserver ----------------------------------------------------------------------

    def vm_created(self, vm: VmRecord, publish: PublishRequest) -> None:
        self._container(vm, "create")

    async def vm_starting(self, vm: VmRecord) -> None:
        for nic in vm.nics:
            self._endpoint(vm, nic.network_id, "connect")
        self._started.add(vm.id)
        self._container(vm, "start")

    async def vm_stopped(self, vm: VmRecord) -> None:
        if vm.id not in self._started:
            return  # a boot undone before it was reported
        self._started.discard(vm.id)
        extra = {"exitCode": str(vm.exit_code)} if vm.exit_code is not None else {}
        self._container(vm, "die", extra)
        for nic in vm.nics:
            self._endpoint(vm, nic.network_id, "disconnect")
        if vm.state == "stopping":  # asked to stop (stop, restart, rm -f)
            self._container(vm, "stop")

    async def vm_removed(self, vm: VmRecord) -> None:
        self._container(vm, "destroy")

    async def vm_renamed(self, old: VmRecord, vm: VmRecord) -> None:
        self._container(vm, "rename", {"oldName": f"/{old.name}"})

    async def reconcile(self, running: list[VmRecord]) -> None:
        self._started = {vm.id for vm in running}

    # --- NetworkObserver -----------------------------------------------------------------

    async def network_added(self, net: NetworkRecord) -> None:
        self.publish("network", "create", net.id, {"name": net.name, "type": net.driver})

    async def network_removed(self, net: NetworkRecord) -> None:
        self.publish("network", "destroy", net.id, {"name": net.name, "type": net.driver})

    # --- internals -----------------------------------------------------------------------

    def _container(self, vm: VmRecord, action: str, extra: dict[str, str] | None = None) -> None:
        """Docker puts a container's labels among its event's attributes (compose filters
        its events by them), then its name and image."""
        attributes = {**vm.spec.labels, "image": vm.image, "name": vm.name, **(extra or {})}
        self.publish("container", action, vm.id, attributes)

    def _endpoint(self, vm: VmRecord, network_id: str, action: str) -> None:
        net = self._find_network(network_id)
        if net is not None:
            attributes = {"container": vm.id, "name": net.name, "type": net.driver}
            self.publish("network", action, net.id, attributes)
