"""What the host tells the guest agent at boot: the kernel command line and /hypr/spec.

Network, DNS and hostname go on the kernel command line (the agent reads /proc/cmdline before
anything else is mounted). The workload goes into /hypr/spec, shipped as a tiny cpio archive
appended to the shared initramfs: argv and env may be long and contain any byte, which the
2 KiB, space-separated command line cannot carry.
"""

from __future__ import annotations

import re

from hypr.guest.cpio import CpioEntry, newc_archive
from hypr.vmm.adapter import VmConfig, WorkloadSpec

# Linux's x86 COMMAND_LINE_SIZE, including the terminating NUL.
MAX_CMDLINE = 2047
# A cmdline word must not contain what the kernel or the agent splits on.
_CMDLINE_SAFE = re.compile(r"^[A-Za-z0-9._:/-]+$")

BASE_CMDLINE = "console=ttyS0 quiet loglevel=1 panic=-1 reboot=t"
# Under TCG the kernel can hang for minutes calibrating TSC/PIT unless it is told the TSC
# rate. The guest's TSC is the host's, so the rate must be the host's too, or the guest clock
# runs fast or slow by the ratio; the default only applies when the host's is unknown.
DEFAULT_TSC_KHZ = 2_000_000


def tcg_cmdline(tsc_khz: int | None = None) -> str:
    """The TCG-only kernel arguments, for a host TSC ticking at `tsc_khz`."""
    return f"tsc_early_khz={tsc_khz or DEFAULT_TSC_KHZ} tsc=reliable"


# Skipping the crypto self-tests saves ~350 ms of boot under TCG (measured); the other
# usual trims (i8042.*, 8250.nr_uarts, mitigations=off) made no measurable difference.
FAST_CMDLINE = "cryptomgr.notests"


def encode_value(value: str) -> str:
    """Percent-encode '%', and every byte < 0x20 or >= 0x7f of the UTF-8 form."""
    out = []
    for byte in value.encode():
        if byte == 0x25 or byte < 0x20 or byte >= 0x7F:
            out.append(f"%{byte:02X}")
        else:
            out.append(chr(byte))
    return "".join(out)


def _check_string(what: str, value: str) -> None:
    if "\0" in value:
        raise ValueError(f"{what} must not contain NUL: {value!r}")


def workload_spec_bytes(spec: WorkloadSpec) -> bytes:
    """Render /hypr/spec: one `key=value` line per item, values percent-encoded."""
    lines: list[str] = []
    for arg in spec.argv:
        _check_string("argv", arg)
        lines.append(f"arg={encode_value(arg)}")
    for kv in spec.env:
        _check_string("env", kv)
        if "=" not in kv or kv.startswith("="):
            raise ValueError(f"env entries must be KEY=VALUE: {kv!r}")
        lines.append(f"env={encode_value(kv)}")
    _check_string("workdir", spec.workdir)
    lines.append(f"workdir={encode_value(spec.workdir or '/')}")
    lines.append(f"restart={spec.restart}")
    if spec.max_restarts < 0:
        raise ValueError("max_restarts must be >= 0")
    lines.append(f"max_restarts={spec.max_restarts}")
    return ("\n".join(lines) + "\n").encode("ascii")


def spec_cpio(spec: WorkloadSpec) -> bytes:
    """A newc archive holding /hypr/spec, meant to be appended to the shared initramfs."""
    entries = [
        CpioEntry.directory("hypr"),
        CpioEntry.file("hypr/spec", workload_spec_bytes(spec), 0o600),
    ]
    # Inode numbers far from the main archive's, so the two never look like hard links.
    return newc_archive(entries, first_ino=0x7FFF0000)


def _safe(what: str, value: str) -> str:
    if not _CMDLINE_SAFE.match(value):
        raise ValueError(f"{what} cannot go on the kernel command line: {value!r}")
    return value


def kernel_cmdline(config: VmConfig, tsc_khz: int | None = None) -> str:
    """The guest kernel's command line for `config` (hypr.* keys are read by the agent).

    `tsc_khz` is the host's TSC rate, used under TCG (see `tcg_cmdline`)."""
    words = [BASE_CMDLINE, FAST_CMDLINE]
    if config.accel == "tcg":
        words.append(tcg_cmdline(tsc_khz))
    for index, nic in enumerate(config.nics):
        addr = "dhcp" if nic.address is None else nic.address.with_prefixlen
        gateway = "" if nic.gateway is None else str(nic.gateway)
        mac = _safe("mac", nic.mac.lower())
        words.append(f"hypr.net=eth{index},{addr},{gateway},{int(nic.mtu)},{mac}")
    if config.dns:
        words.append("hypr.dns=" + ",".join(_safe("dns server", d) for d in config.dns))
    words.append("hypr.hostname=" + _safe("hostname", config.hostname))
    cmdline = " ".join(words)
    if len(cmdline) > MAX_CMDLINE:
        raise ValueError(f"kernel command line too long ({len(cmdline)} > {MAX_CMDLINE})")
    return cmdline
