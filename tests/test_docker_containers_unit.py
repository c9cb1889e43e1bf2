"""The Docker face's containers without a VM: the create body's translation (from bodies
that the docker CLI 28, the Docker SDK and docker-compose 1.29 really send), the refusals,
the inspect and list shapes, the filters, the waits and the rules they share with hypr."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from hypr.api.docker.container_create import ContainerCreate, run_request
from hypr.api.docker.container_filters import prunable, selector
from hypr.api.docker.container_views import inspect_view, list_item, status_text
from hypr.checks import parse_extra_host
from hypr.daemon.containers import _workload_process
from hypr.daemon.exits import Exit, ExitWaits
from hypr.daemon.views import ContainerDetails, NicDetails, VmDetails
from hypr.errors import InvalidArgument
from hypr.network.names import check_vm_name
from hypr.state.ports import ANY_ADDRESS, PortForward
from hypr.state.vms import MountSpec, NicRecord, VmRecord, VmSpec

# `docker create --name web -p 8080:80 -p 127.0.0.1::81 -p 90 -e A=1 -l x=y -v /tmp:/data:ro
# -v /anon --mount type=tmpfs,target=/t,tmpfs-size=1m --tmpfs /run:size=1m --restart
# on-failure:3 -m 300m --cpus 1.5 --add-host h:1.2.3.4 --network mynet --network-alias foo
# --ip 10.0.0.5 --health-cmd true --health-interval 2s -u 1000 -w /x --stop-signal QUIT
# --stop-timeout 5 --hostname hh --entrypoint /bin/sh busybox -c "echo hi"`, as CLI 28 sends it.
CLI_BODY: dict[str, Any] = {
    "Hostname": "hh", "Domainname": "", "User": "1000", "AttachStdin": False,
    "AttachStdout": True, "AttachStderr": True,
    "ExposedPorts": {"80/tcp": {}, "81/tcp": {}, "90/tcp": {}}, "Tty": False,
    "OpenStdin": False, "StdinOnce": False, "Env": ["A=1"], "Cmd": ["-c", "echo hi"],
    "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 2000000000},
    "Image": "busybox", "Volumes": {"/anon": {}}, "WorkingDir": "/x",
    "Entrypoint": ["/bin/sh"], "OnBuild": None, "Labels": {"x": "y"}, "StopSignal": "QUIT",
    "StopTimeout": 5,
    "HostConfig": {
        "Binds": ["/tmp:/data:ro"], "ContainerIDFile": "", "LogConfig": {"Type": "", "Config": {}},
        "NetworkMode": "mynet",
        "PortBindings": {
            "80/tcp": [{"HostIp": "", "HostPort": "8080"}],
            "81/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
            "90/tcp": [{"HostIp": "", "HostPort": ""}],
        },
        "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}, "AutoRemove": False,
        "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [0, 0], "CapAdd": None,
        "CapDrop": None, "CgroupnsMode": "", "Dns": [], "DnsOptions": [], "DnsSearch": [],
        "ExtraHosts": ["h:1.2.3.4"], "GroupAdd": None, "IpcMode": "", "Cgroup": "",
        "Links": None, "OomScoreAdj": 0, "PidMode": "", "Privileged": False,
        "PublishAllPorts": False, "ReadonlyRootfs": False, "SecurityOpt": None,
        "Tmpfs": {"/run": "size=1m"}, "UTSMode": "", "UsernsMode": "", "ShmSize": 0,
        "Isolation": "", "CpuShares": 0, "Memory": 314572800, "NanoCpus": 1500000000,
        "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [], "BlkioDeviceReadBps": [],
        "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [],
        "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0,
        "CpusetCpus": "", "CpusetMems": "", "Devices": [], "DeviceCgroupRules": None,
        "DeviceRequests": None, "MemoryReservation": 0, "MemorySwap": 0,
        "MemorySwappiness": -1, "OomKillDisable": False, "PidsLimit": 0, "Ulimits": [],
        "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
        "Mounts": [{"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1048576}}],
        "MaskedPaths": None, "ReadonlyPaths": None,
    },
    "NetworkingConfig": {"EndpointsConfig": {"mynet": {
        "IPAMConfig": {"IPv4Address": "10.0.0.5"}, "Links": None, "Aliases": ["foo"],
        "MacAddress": "", "DriverOpts": None, "GwPriority": 0, "NetworkID": "",
        "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
        "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": None,
    }}},
}  # fmt: skip
# docker-compose 1.29 (docker-py 5) for a service with a port, a named volume, a network and
# a healthcheck.
COMPOSE_BODY: dict[str, Any] = {
    "ExposedPorts": {"80/tcp": {}}, "Tty": False, "OpenStdin": False, "StdinOnce": False,
    "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
    "Cmd": ["httpd", "-f", "-p", "80"], "Image": "busybox", "Volumes": {"/data": {}},
    "NetworkDisabled": False,
    "HostConfig": {
        "NetworkMode": "proj_front", "VolumesFrom": [], "Binds": ["proj_data:/data:rw"],
        "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}, "Links": [],
        "LogConfig": {"Type": "", "Config": {}},
    },
    "NetworkingConfig": {"EndpointsConfig": {"proj_front": {"Aliases": ["web"], "IPAMConfig": {}}}},
    "Labels": {"com.docker.compose.project": "proj", "com.docker.compose.oneoff": "False"},
    "Healthcheck": {"Test": ["CMD", "true"], "Interval": 5000000000, "Timeout": None,
                    "Retries": None, "StartPeriod": None},
}  # fmt: skip
# The Docker SDK's containers.run(detach=True, ports={"80/tcp": 8080, "81/tcp": None}).
SDK_BODY: dict[str, Any] = {
    "ExposedPorts": {"80/tcp": {}, "81/tcp": {}}, "Tty": False, "OpenStdin": False,
    "StdinOnce": False, "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
    "Env": ["X=1"], "Cmd": ["sleep", "100"], "Image": "busybox", "NetworkDisabled": False,
    "HostConfig": {"NetworkMode": "default", "PortBindings": {
        "80/tcp": [{"HostIp": "", "HostPort": "8080"}], "81/tcp": [{"HostIp": "", "HostPort": ""}],
    }},
    "Labels": {"a": "b"},
}  # fmt: skip


def translate(body: dict[str, Any], name: str | None = "x") -> tuple[dict[str, Any], list[str]]:
    req, warnings = run_request(ContainerCreate.model_validate(body), name)
    return req.model_dump(exclude_defaults=True), warnings


def with_host(**fields: Any) -> dict[str, Any]:
    body = copy.deepcopy(CLI_BODY)
    body["HostConfig"].update(fields)
    return body


def test_the_clis_body_becomes_a_run_request() -> None:
    req, warnings = translate(CLI_BODY, "/web")
    assert warnings == []
    assert req == {
        "image": "busybox", "name": "web", "command": ["-c", "echo hi"],
        "entrypoint": ["/bin/sh"], "env": ["A=1"],
        "networks": [{"network": "mynet", "ip": "10.0.0.5", "aliases": ["foo"]}],
        "vcpus": 2, "memory_mib": 300, "restart": "on-failure:3", "workdir": "/x",
        "user": "1000", "stop_signal": "QUIT", "labels": {"x": "y"}, "hostname": "hh",
        "ports": ["8080:80/tcp", "127.0.0.1::81/tcp", "90/tcp"], "pull": "never",
        "volumes": ["/tmp:/data:ro", "/anon"],
        "mounts": [{"type": "tmpfs", "target": "/t", "tmpfs_size": 1048576}],
        "tmpfs": {"/run": "size=1m"}, "start": False,
        "healthcheck": {"test": ["CMD-SHELL", "true"], "interval": 2.0},
        "stop_timeout": 5, "extra_hosts": ["h:1.2.3.4"],
    }  # fmt: skip


def test_composes_and_the_sdks_bodies() -> None:
    req, _ = translate(COMPOSE_BODY, "proj_web_1")
    assert req["networks"] == [{"network": "proj_front", "aliases": ["web"]}]
    assert req["volumes"] == ["proj_data:/data:rw"]  # Config.Volumes' /data is bound already
    assert req["healthcheck"] == {"test": ["CMD", "true"], "interval": 5.0}
    req, _ = translate(SDK_BODY, None)
    assert req["networks"] == [{"network": "bridge"}]  # `default`: hypr's default network
    assert req["ports"] == ["8080:80/tcp", "81/tcp"] and "name" not in req


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"NetworkMode": "default"}, None),
        ({"NetworkMode": "bridge"}, [{"network": "bridge", "ip": "10.0.0.5", "aliases": ["foo"]}]),
        ({"NetworkMode": "none"}, "join"),
        ({"NetworkMode": "host"}, "NetworkMode host"),
        ({"NetworkMode": "container:db"}, "NetworkMode container:db"),
    ],
)
def test_network_modes(fields: dict[str, Any], expected: Any) -> None:
    body = with_host(**fields)
    if fields["NetworkMode"] in ("default", "bridge"):
        body["NetworkingConfig"]["EndpointsConfig"] = {
            fields["NetworkMode"]: body["NetworkingConfig"]["EndpointsConfig"]["mynet"]
        }
    if isinstance(expected, str):
        with pytest.raises(InvalidArgument) as refused:
            translate(body)
        assert expected in refused.value.message
        return
    req, _ = translate(body)
    if expected is None:
        assert req["networks"] == [{"network": "bridge", "ip": "10.0.0.5", "aliases": ["foo"]}]
    else:
        assert req["networks"] == expected


def test_none_and_more_endpoints() -> None:
    body = with_host(NetworkMode="none")
    body["NetworkingConfig"] = None
    assert translate(body)[0]["networks"] == []
    body = with_host(NetworkMode="front")
    body["NetworkingConfig"] = {
        "EndpointsConfig": {
            "front": {"Aliases": ["a"]},
            "back": {"MacAddress": "02:00:00:00:00:01"},
        }
    }
    assert translate(body)[0]["networks"] == [
        {"network": "front", "aliases": ["a"]},
        {"network": "back", "mac": "02:00:00:00:00:01"},
    ]


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"Privileged": True}, "HostConfig.Privileged"),
        ({"CapAdd": ["CAP_NET_ADMIN"]}, "HostConfig.CapAdd"),
        ({"CapDrop": ["ALL"]}, "HostConfig.CapDrop"),
        ({"Devices": [{"PathOnHost": "/dev/kvm"}]}, "HostConfig.Devices"),
        ({"DeviceRequests": [{"Count": -1}]}, "HostConfig.DeviceRequests"),
        ({"PidMode": "host"}, "HostConfig.PidMode"),
        ({"IpcMode": "container:db"}, "HostConfig.IpcMode"),
        ({"UTSMode": "host"}, "HostConfig.UTSMode"),
        ({"UsernsMode": "host"}, "HostConfig.UsernsMode"),
        ({"VolumesFrom": ["db"]}, "HostConfig.VolumesFrom"),
        ({"Links": ["db:db"]}, "HostConfig.Links"),
        ({"ReadonlyRootfs": True}, "HostConfig.ReadonlyRootfs"),
        ({"Sysctls": {"net.core.somaxconn": "1024"}}, "HostConfig.Sysctls"),
        ({"SecurityOpt": ["seccomp=unconfined"]}, "HostConfig.SecurityOpt"),
        ({"GroupAdd": ["audio"]}, "HostConfig.GroupAdd"),
        ({"Ulimits": [{"Name": "nofile", "Soft": 1, "Hard": 1}]}, "HostConfig.Ulimits"),
        ({"Runtime": "nvidia"}, "HostConfig.Runtime"),
        ({"VolumeDriver": "nfs"}, "HostConfig.VolumeDriver"),
        ({"Dns": ["192.0.2.53"]}, "HostConfig.Dns"),
        ({"DnsSearch": ["example.com"]}, "HostConfig.DnsSearch"),
        ({"Memory": 50 * 2**20}, "HostConfig.Memory"),
        ({"AutoRemove": True}, "AutoRemove and RestartPolicy on-failure:3"),
        ({"PortBindings": {"80/tcp": [{"HostIp": "::", "HostPort": "80"}]}}, "IPv6"),
        ({"Mounts": [{"Type": "npipe", "Target": "/x"}]}, "type npipe"),
        (
            {"Mounts": [{"Type": "volume", "Target": "/x",
                         "VolumeOptions": {"DriverConfig": {"Name": "nfs"}}}]},
            "volume driver nfs",
        ),
    ],
)  # fmt: skip
def test_what_cannot_be_honoured_is_refused_by_name(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        translate(with_host(**fields))
    assert field in refused.value.message and "\n" not in refused.value.message


@pytest.mark.parametrize(
    "config, field",
    [
        ({"OpenStdin": True}, "OpenStdin"),
        ({"AttachStdin": True}, "AttachStdin"),
        ({"Healthcheck": {"Test": ["CMD"]}}, "Healthcheck.Test"),
        ({"StopTimeout": -2}, "stop_timeout"),
    ],
)
def test_config_fields_refused(config: dict[str, Any], field: str) -> None:
    body = {**copy.deepcopy(CLI_BODY), **config}
    with pytest.raises(InvalidArgument) as refused:
        translate(body)
    assert field in refused.value.message


def test_ipv6_endpoints_are_refused() -> None:
    body = copy.deepcopy(CLI_BODY)
    body["NetworkingConfig"]["EndpointsConfig"]["mynet"]["IPAMConfig"]["IPv6Address"] = "fd00::5"
    with pytest.raises(InvalidArgument, match="IPv6"):
        translate(body)


def test_cgroup_knobs_warn_and_unknown_fields_are_ignored() -> None:
    body = with_host(CpuShares=512, PidsLimit=100, LogConfig={"Type": "syslog"}, Bogus=1)
    body["Whatever"] = {"x": 1}
    req, warnings = translate(body)
    assert req["image"] == "busybox"
    assert warnings == [
        "hypr ignores HostConfig.CpuShares: a VM's resources are its vCPUs and its memory",
        "hypr ignores HostConfig.PidsLimit: a VM's resources are its vCPUs and its memory",
        "hypr ignores the log driver syslog: a VM's log is its console",
    ]


def test_entrypoint_strings_and_sizes() -> None:
    body = {**copy.deepcopy(CLI_BODY), "Entrypoint": [""], "Cmd": "true"}
    req, _ = translate(body)
    assert req["entrypoint"] == [] and req["command"] == ["true"]
    body = {**copy.deepcopy(CLI_BODY), "Entrypoint": "/init", "Cmd": []}
    req, _ = translate(body)
    assert req["entrypoint"] == ["/init"] and "command" not in req
    req, _ = translate(with_host(Memory=0, NanoCpus=0, CpuCount=3))
    assert req["vcpus"] == 3 and "memory_mib" not in req  # 0: hypr's default
    req, _ = translate(with_host(Memory=256 * 2**20 + 1))
    assert req["memory_mib"] == 257


def test_publish_all_adds_the_configs_exposed_ports() -> None:
    body = with_host(PublishAllPorts=True, PortBindings={"80/tcp": [{"HostPort": "8080"}]})
    body["ExposedPorts"] = {"80/tcp": {}, "7000": {}, "53/udp": {}}
    req, _ = translate(body)
    assert req["ports"] == ["8080:80/tcp", "7000/tcp", "53/udp"] and req["publish_all"]


# --- views ---------------------------------------------------------------------------------

VM_ID = "ab" * 32


def details(state: str = "running", **vm_fields: Any) -> ContainerDetails:
    spec = VmSpec(
        argv=["httpd", "-f"], env=["PATH=/bin"], labels={"app": "web"}, aliases=[["www"]],
        requested_ips=[None], exposed_ports=["80/tcp", "443/tcp"],
        mounts=[MountSpec("volume", "v1", "/data", copy_up=True, anonymous=True)],
    )  # fmt: skip
    vm = VmRecord(
        id=VM_ID, name="web", image="busybox:latest", spec=spec, state=state,
        created="2026-01-01T00:00:00.000000Z", pid=4242,
        started_at="2026-01-01T00:00:01.000000Z",
        nics=(NicRecord(VM_ID, 0, "n" * 64, "02:fc:00:00:00:02", IPv4Address("10.88.0.2"), "t0"),),
        **vm_fields,
    )  # fmt: skip
    nic = NicDetails("bridge", "n" * 64, IPv4Address("10.88.0.2"), 16, IPv4Address("10.88.0.1"),
                     "02:fc:00:00:00:02", "t0")  # fmt: skip
    forwards = [PortForward("tcp", ANY_ADDRESS, 8080, 80)]
    vm_details = VmDetails(vm, [nic], forwards, Path("/log"), state == "running", ["/vols/v1"])
    return ContainerDetails(vm_details, "sha256:" + "c" * 64, None)


def test_inspect_while_running_and_after() -> None:
    doc = inspect_view(details(), short_id_alias=True)
    settings = doc["NetworkSettings"]
    assert settings["Ports"] == {
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}],
        "443/tcp": None,
    }
    bridge = settings["Networks"]["bridge"]
    assert bridge["Aliases"] == ["www", VM_ID[:12]] and bridge["IPAddress"] == "10.88.0.2"
    assert settings["IPAddress"] == "10.88.0.2" and bridge["EndpointID"].startswith(VM_ID[:56])
    assert doc["State"]["Pid"] == 4242 and doc["Config"]["Volumes"] == {"/data": {}}
    assert doc["Mounts"] == [{
        "Type": "volume", "Name": "v1", "Source": "/vols/v1", "Driver": "local",
        "Destination": "/data", "Mode": "", "RW": True, "Propagation": "",
    }]  # fmt: skip
    assert inspect_view(details(), short_id_alias=False)["NetworkSettings"]["Networks"]["bridge"][
        "Aliases"
    ] == ["www"]

    exited = inspect_view(details("exited", exit_code=3), short_id_alias=True)
    assert exited["State"]["Status"] == "exited" and exited["State"]["ExitCode"] == 3
    assert exited["NetworkSettings"]["Ports"] == {}
    assert exited["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] == ""
    crashed = inspect_view(details("exited", error="the hypervisor exited"), short_id_alias=True)
    assert crashed["State"]["ExitCode"] == 255 and crashed["State"]["Error"]


def test_status_texts_and_list_items() -> None:
    start = 1767225601.0  # 2026-01-01T00:00:01Z
    assert status_text(details(), now=start + 3) == "Up 3 seconds"
    healthy = replace(details(), health="healthy")
    assert status_text(healthy, now=start + 90) == "Up About a minute (healthy)"
    starting = replace(details(), health="starting")
    assert status_text(starting, now=start).endswith("(health: starting)")
    exited = details("exited", exit_code=0, finished_at="2026-01-01T00:00:05.000000Z")
    assert status_text(exited, now=start + 124) == "Exited (0) 2 minutes ago"
    assert status_text(details("created")) == "Created"
    item = list_item(details(), short_id_alias=False, now=start + 3)
    assert item["Names"] == ["/web"] and item["Created"] == 1767225600
    assert item["Ports"] == [
        {"PrivatePort": 80, "Type": "tcp", "IP": "0.0.0.0", "PublicPort": 8080},
        {"PrivatePort": 443, "Type": "tcp"},
    ]


def test_list_filters() -> None:
    running, exited = details(), details("exited", exit_code=1)

    def pick(wanted: dict[str, list[str]], c: ContainerDetails) -> bool:
        return selector(wanted, lambda ref: "sha256:" + "c" * 64 if ref == "busybox" else "",
                        lambda ref: "2025-01-01T00:00:00Z")(c)  # fmt: skip

    assert pick({"label": ["app=web"]}, running) and not pick({"label": ["app=db"]}, running)
    assert pick({"name": ["^/web$"]}, running) and not pick({"name": ["db"]}, running)
    assert pick({"id": [VM_ID[:5]]}, running) and pick({"network": ["bridge"]}, running)
    assert pick({"status": ["exited"]}, exited) and not pick({"status": ["exited"]}, running)
    assert pick({"exited": ["1"]}, exited) and pick({"ancestor": ["busybox"]}, running)
    assert pick({"health": ["none"]}, running) and pick({"since": ["old"]}, running)
    assert pick({"volume": ["/data"]}, running)
    with pytest.raises(InvalidArgument, match="status=paws"):
        pick({"status": ["paws"]}, running)
    only = prunable({"label": ["app=web"], "until": ["2027-01-01T00:00:00Z"]})
    assert only(running.details.vm) and not prunable({"label!": ["app"]})(running.details.vm)


def test_top_leaves_out_the_agent_kernel_threads_and_itself() -> None:
    titles = ["PID", "USER", "TIME", "COMMAND"]
    argv = ["ps", "-ef"]
    assert not _workload_process(titles, ["1", "root", "0:00", "/init"], argv)
    assert not _workload_process(titles, ["2", "root", "0:00", "[kthreadd]"], argv)
    assert not _workload_process(titles, ["90", "root", "0:00", "ps -ef"], argv)
    assert _workload_process(titles, ["79", "root", "0:00", "httpd -f -p 80"], argv)


# --- waits and shared rules ------------------------------------------------------------------


def test_exit_waits_resolve_and_clean_up() -> None:
    async def scenario() -> None:
        waits = ExitWaits()
        exit_wait = asyncio.create_task(waits.wait("a", "exit"))
        removal = asyncio.create_task(waits.wait("a", "removed"))
        abandoned = asyncio.create_task(waits.wait("b", "exit"))
        await asyncio.sleep(0)
        abandoned.cancel()  # a client that went away
        waits.exited("a", Exit(3, None))
        assert await exit_wait == Exit(3, None) and not removal.done()
        waits.removed("a", Exit(3, None))
        assert await removal == Exit(3, None)
        with pytest.raises(asyncio.CancelledError):
            await abandoned
        assert waits._waiters == {}  # nothing left behind

    asyncio.run(scenario())


def test_extra_hosts_and_names() -> None:
    assert parse_extra_host("db.local:192.0.2.7") == ("db.local", "192.0.2.7")
    assert parse_extra_host("gw=host-gateway") == ("gw", "host-gateway")
    for bad in ("nohost", "a:b", "v6:::1", ":1.2.3.4"):
        with pytest.raises(InvalidArgument):
            parse_extra_host(bad)
    for good in ("proj_web_1", "a.b", "web", "A9"):
        assert check_vm_name(good) == good
    for bad in ("-a", "a-", "a..b", "a.-b", "bad_name!", "x" * 64, "_a"):
        with pytest.raises(InvalidArgument, match="invalid VM name"):
            check_vm_name(bad)
