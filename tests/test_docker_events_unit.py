"""The event bus and the Docker face's filters as pure logic: what each lifecycle hook
reports, replay and fan-out, Docker's filter rules and time formats."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

import pytest

from hypr.api.docker.events import docker_event, selected
from hypr.api.docker.filters import match_any, parse_filters, timestamp_nanos
from hypr.daemon.events import EventBus
from hypr.errors import InvalidArgument
from hypr.state.networks import NetworkRecord
from hypr.state.vms import NicRecord, PublishRequest, VmRecord, VmSpec

NET = NetworkRecord(
    "a" * 64, "back", "bridge", IPv4Network("10.9.0.0/24"), IPv4Address("10.9.0.1"), "vbr1",
    False, "2026-01-01T00:00:00Z",
)  # fmt: skip
VM = VmRecord(
    id="b" * 64, name="db", image="busybox:latest", state="created", created="now",
    spec=VmSpec(argv=["sleep"], labels={"com.docker.compose.project": "shop"}),
    nics=(NicRecord("b" * 64, 0, NET.id, "02:fc:00:00:00:01", IPv4Address("10.9.0.2"), None),),
)  # fmt: skip


def lifecycle(bus: EventBus, asked_to_stop: bool) -> None:
    async def run() -> None:
        bus.vm_created(VM, PublishRequest())
        await bus.vm_starting(VM)
        state = "stopping" if asked_to_stop else "running"
        await bus.vm_stopped(replace(VM, state=state, exit_code=137 if asked_to_stop else 0))
        await bus.vm_removed(VM)

    asyncio.run(run())


def test_a_vm_lifecycle_reads_as_docker_reports_it() -> None:
    bus = EventBus({NET.id: NET}.get)
    lifecycle(bus, asked_to_stop=True)
    seen = [(e.type, e.action) for e in bus.recent(0)]
    assert seen == [
        ("container", "create"), ("network", "connect"), ("container", "start"),
        ("container", "die"), ("network", "disconnect"), ("container", "stop"),
        ("container", "destroy"),
    ]  # fmt: skip
    die = bus.recent(0)[3]
    assert die.attributes == {
        "com.docker.compose.project": "shop", "image": "busybox:latest", "name": "db",
        "exitCode": "137",
    }  # fmt: skip
    body = docker_event(die)
    assert body["status"] == "die" and body["id"] == VM.id and body["from"] == "busybox:latest"
    assert body["Actor"] == {"ID": VM.id, "Attributes": die.attributes}
    assert body["scope"] == "local" and body["time"] == body["timeNano"] // 10**9
    connect = bus.recent(0)[1]
    assert connect.actor_id == NET.id
    assert connect.attributes == {"container": VM.id, "name": "back", "type": "bridge"}
    assert "status" not in docker_event(connect)


def test_an_exit_of_its_own_is_no_stop_and_an_undone_boot_no_die() -> None:
    bus = EventBus({NET.id: NET}.get)
    lifecycle(bus, asked_to_stop=False)
    assert "stop" not in [e.action for e in bus.recent(0)]
    quiet = EventBus({NET.id: NET}.get)
    asyncio.run(quiet.vm_stopped(VM))  # never reported started: a boot undone early
    assert quiet.recent(0) == []


def test_subscribers_get_new_events_and_slow_ones_lose_the_oldest() -> None:
    bus = EventBus(lambda _: None)
    bus.publish("network", "create", "x", {"name": "early"})
    with bus.subscribe() as queue:
        bus.publish("network", "create", "y", {"name": "late"})
        assert queue.get_nowait().attributes["name"] == "late"
        assert queue.empty()
        for i in range(queue.maxsize + 5):
            bus.publish("network", "create", str(i), {})
        assert queue.qsize() == queue.maxsize and queue.get_nowait().actor_id == "5"
    assert len(bus._subscribers) == 0
    since = bus.recent(0)[-2].time_nano
    assert len(bus.recent(since)) >= 2


def test_filters_follow_dockers_rules() -> None:
    bus = EventBus({NET.id: NET}.get)
    lifecycle(bus, asked_to_stop=True)
    events = bus.recent(0)

    def actions(raw: str) -> list[str]:
        wanted = parse_filters(raw)
        return [f"{e.type}:{e.action}" for e in events if selected(e, wanted)]

    assert actions('{"type": ["network"]}') == ["network:connect", "network:disconnect"]
    assert actions('{"event": ["die", "stop"]}') == ["container:die", "container:stop"]
    assert actions('{"container": ["bbbb"], "event": ["start"]}') == ["container:start"]
    assert actions('{"container": ["db"], "event": ["create"]}') == ["container:create"]
    assert actions('{"network": ["back"]}') == ["network:connect", "network:disconnect"]
    project = '{"label": ["com.docker.compose.project=shop"], "event": {"destroy": true}}'
    assert actions(project) == ["container:destroy"]
    assert actions('{"label": ["com.docker.compose.project=other"]}') == []
    with pytest.raises(InvalidArgument, match="invalid filter 'colour'"):
        parse_filters('{"colour": ["red"]}', ("type",))
    with pytest.raises(InvalidArgument, match="not JSON"):
        parse_filters("{")


def test_times_and_name_matching() -> None:
    now = 2_000_000_000 * 10**9
    assert timestamp_nanos("1700000000") == 1_700_000_000 * 10**9
    assert timestamp_nanos("1700000000.000000123") == 1_700_000_000 * 10**9 + 123
    assert timestamp_nanos("10m", now) == now - 600 * 10**9
    assert timestamp_nanos("1h30m", now) == now - 5400 * 10**9
    assert timestamp_nanos("2023-11-14T22:13:20Z") == 1_700_000_000 * 10**9
    assert timestamp_nanos("2023-11-14T23:13:20.5+01:00") == 1_700_000_000 * 10**9 + 5 * 10**8
    with pytest.raises(InvalidArgument, match="invalid time"):
        timestamp_nanos("yesterday")
    assert match_any(["web"], "web-1") and match_any(["^web$"], "web")
    assert not match_any(["^web$"], "web-1") and match_any(["a[b"], "xa[by")
