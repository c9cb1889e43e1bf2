"""The /hypr/spec format, the cpio writer and the kernel command line."""

from __future__ import annotations

import re
import shutil
import subprocess
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hypr.errors import InvalidArgument
from hypr.guest.cpio import CpioEntry, newc_archive
from hypr.guest.spec import (
    GuestNic,
    GuestSpec,
    WorkloadSpec,
    encode_value,
    kernel_args,
    spec_cpio,
    workload_spec_bytes,
)
from hypr.vmm.cmdline import MAX_CMDLINE, kernel_cmdline


def decode_spec(data: bytes) -> dict[str, list[str]]:
    """A reference decoder, written from the format's description, not from the encoder."""
    out: dict[str, list[str]] = {}
    for line in data.split(b"\n"):
        if not line:
            continue
        assert all(0x20 <= b < 0x7F for b in line), line
        key, _, value = line.partition(b"=")
        raw = re.sub(rb"%([0-9A-F]{2})", lambda m: bytes([int(m.group(1), 16)]), value)
        out.setdefault(key.decode(), []).append(raw.decode())
    return out


no_nul = st.text(st.characters(blacklist_characters="\0", blacklist_categories=["Cs"]))


@given(
    st.lists(no_nul, max_size=5),
    st.lists(st.tuples(st.from_regex(r"[A-Z_]{1,6}", fullmatch=True), no_nul), max_size=4),
    no_nul.filter(bool),
    st.sampled_from(["no", "always", "on-failure"]),
    st.integers(0, 100),
)
def test_spec_round_trip(
    argv: list[str], env: list[tuple[str, str]], workdir: str, restart: str, max_restarts: int
) -> None:
    spec = WorkloadSpec(
        argv=argv,
        env=[f"{k}={v}" for k, v in env],
        workdir=workdir,
        restart=restart,  # type: ignore[arg-type]
        max_restarts=max_restarts,
    )
    decoded = decode_spec(workload_spec_bytes(spec))
    assert decoded.get("arg", []) == argv
    assert decoded.get("env", []) == spec.env
    assert decoded["workdir"] == [workdir]
    assert decoded["restart"] == [restart]
    assert decoded["max_restarts"] == [str(max_restarts)]


def test_encode_value_escapes() -> None:
    assert encode_value("a b=%c\nd\x7fé") == "a b=%25c%0Ad%7F%C3%A9"


def test_spec_rejects_nul_and_bad_env() -> None:
    with pytest.raises(ValueError):
        workload_spec_bytes(WorkloadSpec(argv=["a\0b"]))
    with pytest.raises(ValueError):
        workload_spec_bytes(WorkloadSpec(argv=["sh"], env=["NOVALUE"]))


def parse_newc(data: bytes) -> list[tuple[str, int, bytes, tuple[int, int]]]:
    """(name, mode, data, rdev) of each member, checking the 4-byte alignment rules."""
    members: list[tuple[str, int, bytes, tuple[int, int]]] = []
    pos = 0
    while True:
        assert pos % 4 == 0
        assert data[pos : pos + 6] == b"070701"
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = fields[11], fields[6]
        name = data[pos + 110 : pos + 110 + namesize - 1].decode()
        assert data[pos + 110 + namesize - 1] == 0
        start = pos + 110 + namesize
        start += -start % 4
        body = data[start : start + filesize]
        pos = start + filesize
        pos += -pos % 4
        if name == "TRAILER!!!":
            assert pos == len(data)
            return members
        members.append((name, fields[1], body, (fields[9], fields[10])))


def test_spec_cpio_layout() -> None:
    spec = WorkloadSpec(argv=["sleep", "1"])
    members = parse_newc(spec_cpio(spec))
    assert [(m[0], oct(m[1])) for m in members] == [("hypr", "0o40755"), ("hypr/spec", "0o100600")]
    assert members[1][2] == workload_spec_bytes(spec)


def test_newc_archive_members() -> None:
    data = newc_archive(
        [
            CpioEntry.directory("dev"),
            CpioEntry.chardev("dev/console", 5, 1),
            CpioEntry.file("init", b"\x7fELF...", 0o755),
            CpioEntry.symlink("bin/sh", "busybox"),
        ]
    )
    members = parse_newc(data)
    assert members[1] == ("dev/console", 0o20600, b"", (5, 1))
    assert members[2] == ("init", 0o100755, b"\x7fELF...", (0, 0))
    assert members[3] == ("bin/sh", 0o120777, b"busybox", (0, 0))
    with pytest.raises(ValueError):
        newc_archive([CpioEntry.file("/abs", b"")])


@pytest.mark.skipif(shutil.which("cpio") is None, reason="cpio not installed")
def test_newc_archive_reads_with_gnu_cpio(tmp_path: Path) -> None:
    data = newc_archive([CpioEntry.directory("d"), CpioEntry.file("d/f", b"hello\n")])
    listing = subprocess.run(
        ["cpio", "-it", "--quiet"], input=data, capture_output=True, check=True
    ).stdout
    assert listing.split() == [b"d", b"d/f"]


def guest_spec(nics: list[GuestNic], **kw: object) -> GuestSpec:
    base: dict[str, object] = dict(
        hostname="web-1",
        nics=nics,
        dns=["10.88.0.1", "1.1.1.1"],
        workload=WorkloadSpec(argv=["sh"]),
    )
    base.update(kw)
    return GuestSpec(**base)  # type: ignore[arg-type]


def test_kernel_cmdline() -> None:
    nics = [
        GuestNic("52:54:00:AA:BB:CC", IPv4Interface("10.88.0.5/16"), IPv4Address("10.88.0.1"),
                 1450),
        GuestNic("52:54:00:00:00:01", None, None),
    ]  # fmt: skip
    args = kernel_args(guest_spec(nics))
    words = kernel_cmdline("tcg", args).split()
    assert "hypr.net=eth0,10.88.0.5/16,10.88.0.1,1450,52:54:00:aa:bb:cc" in words
    assert "hypr.net=eth1,dhcp,,1500,52:54:00:00:00:01" in words
    assert "hypr.dns=10.88.0.1,1.1.1.1" in words
    assert "hypr.hostname=web-1" in words
    assert {"console=ttyS0", "panic=-1", "tsc_early_khz=2000000", "tsc=reliable"} <= set(words)
    assert "tsc_early_khz=2445404" in kernel_cmdline("tcg", args, tsc_khz=2445404).split()
    kvm_words = kernel_cmdline("kvm", args).split()
    assert "tsc_early_khz=2000000" not in kvm_words


def test_kernel_cmdline_rejects_unsafe_values() -> None:
    with pytest.raises(ValueError):
        kernel_args(guest_spec([], hostname="a b"))
    with pytest.raises(ValueError):
        kernel_args(guest_spec([], dns=["1.1.1.1,evil"]))
    with pytest.raises(ValueError, match="too long"):
        kernel_cmdline("tcg", "x" * MAX_CMDLINE)


def test_user_stop_signal_and_layers_reach_the_agent() -> None:
    workload = WorkloadSpec(argv=["sh"], user="daemon:users", stop_signal="SIGQUIT")
    text = workload_spec_bytes(workload).decode()
    assert "user=daemon:users\n" in text
    assert "stop_signal=3\n" in text
    assert "stop_signal" not in workload_spec_bytes(WorkloadSpec(argv=["sh"])).decode()
    assert (
        "stop_signal=10\n" in workload_spec_bytes(WorkloadSpec(["sh"], stop_signal="usr1")).decode()
    )
    assert "hypr.layers=3" in kernel_args(GuestSpec("web", [], [], workload, layers=3)).split()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("user", "a b", "invalid user"),
        ("user", "root:", "invalid user"),
        ("stop_signal", "SIGNOPE", "invalid stop signal"),
        ("stop_signal", "0", "invalid stop signal"),
    ],
)
def test_bad_user_or_stop_signal_is_refused(field: str, value: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        workload_spec_bytes(WorkloadSpec(argv=["sh"], **{field: value}))  # type: ignore[arg-type]
