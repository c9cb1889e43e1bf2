"""The kernel arguments an adapter adds to the caller's: the console it wires up, how a
crash ends the VM, and what the kernel needs to boot quickly under each accelerator."""

from __future__ import annotations

from hypr.vmm.adapter import Accel

# Linux's x86 COMMAND_LINE_SIZE, including the terminating NUL.
MAX_CMDLINE = 2047
# ttyS0 is the serial port QEMU logs; reboot=t with -no-reboot: a failed power-off or a
# panic (panic=-1) also ends QEMU.
BASE_CMDLINE = "console=ttyS0 quiet loglevel=1 panic=-1 reboot=t"
# Skipping the crypto self-tests saves ~350 ms of boot under TCG (measured); the other
# usual trims (i8042.*, 8250.nr_uarts, mitigations=off) made no measurable difference.
FAST_CMDLINE = "cryptomgr.notests"
# Under TCG the kernel can hang for minutes calibrating TSC/PIT unless it is told the TSC
# rate. The guest's TSC is the host's, so the rate must be the host's too, or the guest clock
# runs fast or slow by the ratio; the default only applies when the host's is unknown.
DEFAULT_TSC_KHZ = 2_000_000


def tcg_cmdline(tsc_khz: int | None = None) -> str:
    """The TCG-only kernel arguments, for a host TSC ticking at `tsc_khz`."""
    return f"tsc_early_khz={tsc_khz or DEFAULT_TSC_KHZ} tsc=reliable"


def kernel_cmdline(accel: Accel, guest_args: str, tsc_khz: int | None = None) -> str:
    """The whole command line: ours, then the caller's `guest_args`.

    `tsc_khz` is the host's TSC rate, used under TCG (see `tcg_cmdline`)."""
    words = [BASE_CMDLINE, FAST_CMDLINE]
    if accel == "tcg":
        words.append(tcg_cmdline(tsc_khz))
    if guest_args:
        words.append(guest_args)
    cmdline = " ".join(words)
    if len(cmdline) > MAX_CMDLINE:
        raise ValueError(f"kernel command line too long ({len(cmdline)} > {MAX_CMDLINE})")
    return cmdline
