"""/machines: Hyperfleet's API shape over hypr's VMs (docs/api.md).

A machine is a hypr VM whose root is a kernel and a root filesystem file given by path,
on the `ptp` network Hyperfleet's addressing describes (a /30 per VM from 172.16.0.0/16,
the host side on its TAP); the request is translated into hypr's own RunRequest and runs
through the same services. hypr's agent is PID 1, so the root filesystem's own init does
not run: the machine runs an idle shell loop (it needs /bin/sh and sleep) and commands
come through exec.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from hypr.api.deps import daemon_of
from hypr.daemon.requests import NetworkAttachment, RunRequest
from hypr.daemon.views import VmDetails
from hypr.network.manager import NetworkRequest

router = APIRouter(prefix="/machines", tags=["machines"])

PTP_NETWORK = NetworkRequest(name="ptp", driver="ptp", subnet="172.16.0.0/16")
# Stays up until stopped, and stops at once on SIGTERM.
IDLE_COMMAND = ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"]
STATUS = {"created": "pending", "exited": "stopped"}  # hypr's states, Hyperfleet's words


class MachineRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    vcpu_count: int = Field(default=1, ge=1)
    mem_size_mib: int = Field(default=256, ge=1)
    kernel_image_path: str
    rootfs_path: str
    exposed_ports: list[int] = Field(default_factory=list)


class MachineExec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cmd: list[str] = Field(min_length=1)


class MachineView(BaseModel):
    id: str
    name: str
    status: str
    tap_device: str | None
    tap_ip: str | None
    guest_ip: str | None
    guest_mac: str | None
    vcpu_count: int
    mem_size_mib: int
    kernel_image_path: str | None  # None: hypr's own kernel
    rootfs_path: str
    exposed_ports: list[int]


class MachineExecResult(BaseModel):
    exit_code: int
    stdout: str
    stderr: str


def machine_view(details: VmDetails) -> MachineView:
    vm, nic = details.vm, details.nics[0] if details.nics else None
    return MachineView(
        id=vm.id,
        name=vm.name,
        status=STATUS.get(vm.state, vm.state),
        tap_device=nic.tap if nic else None,
        tap_ip=str(nic.gateway) if nic and nic.gateway else None,
        guest_ip=str(nic.ip) if nic and nic.ip else None,
        guest_mac=nic.mac if nic else None,
        vcpu_count=vm.spec.vcpus,
        mem_size_mib=vm.spec.memory_mib,
        kernel_image_path=vm.spec.kernel,
        rootfs_path=vm.image,
        exposed_ports=[int(port.partition("/")[0]) for port in vm.spec.exposed_ports],
    )


@router.post("", status_code=201)
async def create_machine(body: MachineRequest, request: Request) -> MachineView:
    """Checked before anything is made: both files under the allowed directories, a
    kernel and an ext4 or squashfs filesystem; then the machine boots."""
    daemon = daemon_of(request)
    kernel = daemon.boot_file(body.kernel_image_path, "kernel", "kernel_image_path")
    rootfs = daemon.boot_file(body.rootfs_path, "rootfs", "rootfs_path")
    run = RunRequest(
        image=str(rootfs),
        kernel=str(kernel),
        name=body.name,
        command=IDLE_COMMAND,
        vcpus=body.vcpu_count,
        memory_mib=body.mem_size_mib,
        networks=[NetworkAttachment(network=PTP_NETWORK.name)],
        expose=[str(port) for port in body.exposed_ports],
    )
    return machine_view(await daemon.run_on_network(run, PTP_NETWORK))


@router.get("")
async def list_machines(request: Request) -> list[MachineView]:
    return [machine_view(details) for details in daemon_of(request).vm_views(all=True)]


@router.get("/{ref}")
async def inspect_machine(ref: str, request: Request) -> MachineView:
    return machine_view(daemon_of(request).vm_view(ref))


@router.delete("/{ref}", status_code=204)
async def delete_machine(ref: str, request: Request) -> None:
    """Stopped and removed at once, its TAP and /30 released."""
    await daemon_of(request).remove_vm(ref, force=True)


@router.post("/{ref}/exec")
async def exec_machine(ref: str, body: MachineExec, request: Request) -> MachineExecResult:
    result = await daemon_of(request).exec_vm(ref, body.cmd, [], None, b"")
    return MachineExecResult(
        exit_code=result.exit_code,
        stdout=result.stdout.decode(errors="replace"),
        stderr=result.stderr.decode(errors="replace"),
    )
