"""Volumes, bind mounts and tmpfs in real VMs: one virtiofsd per VM under a real hyprd in a
namespace the test made, what the guest sees through exec, what lands on the host."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hypr.sandbox import Hyprd, wait_for
from hypr.vmm.virtiofs import VirtiofsDaemons
from tests.oci_images import busybox_layers
from tests.registry import RegistryLab, hyprd_with_registry

pytestmark = pytest.mark.vm


class Lab(RegistryLab):
    def sh(self, vm: str, script: str) -> subprocess.CompletedProcess[str]:
        return self.hyprd.hypr("exec", vm, "--", "sh", "-c", script)

    def out(self, vm: str, script: str) -> str:
        result = self.sh(vm, script)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def mountpoint(self, volume: str) -> Path:
        return Path(json.loads(self.hyprd.ok("volume", "inspect", volume))[0]["Mountpoint"])

    def volumes(self) -> set[str]:
        return set(self.hyprd.ok("volume", "ls", "-q").split())


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One daemon (and a registry for the image with a VOLUME) for the module."""
    root = tmp_path_factory.mktemp("volumes")
    with hyprd_with_registry(root) as (hyprd, registry):
        yield Lab(hyprd, registry, root)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    return result.stderr


def volume_image(lab: Lab, tmp_path: Path) -> str:
    """busybox_layers with `VOLUME /data`: its /data holds links, odd owners, a whiteout."""
    layout = tmp_path / "layout"
    shutil.copytree(busybox_layers(), layout)
    subprocess.run(
        ["umoci", "config", "--image", f"{layout}:latest", "--tag", "vol",
         "--config.volume", "/data"],
        check=True,
    )  # fmt: skip
    return lab.registry.push(layout, "vol", "test/volimage")


def test_a_volume_outlives_its_vm(lab: Lab) -> None:
    assert (
        lab.run("-d", "--name", "w1", "-v", "keep:/data", "busybox", "sleep", "1d").returncode == 0
    )
    lab.out("w1", "echo one > /data/f && mkdir -p /data/d && echo two > /data/d/g")
    mountpoint = lab.mountpoint("keep")
    assert mountpoint == lab.hyprd.data_dir / "volumes" / "local" / "keep"
    assert (mountpoint / "f").read_text() == "one\n"
    assert (mountpoint / "d" / "g").read_text() == "two\n"
    lab.hyprd.ok("rm", "-f", "w1")
    assert (mountpoint / "f").read_text() == "one\n"
    again = lab.run("--rm", "-v", "keep:/data", "busybox", "cat", "/data/f", "/data/d/g")
    assert again.returncode == 0, again.stderr
    assert again.stdout == "one\ntwo\n"


def test_two_running_vms_share_a_volume_both_ways(lab: Lab) -> None:
    for vm in ("sa", "sb"):
        assert (
            lab.run("-d", "--name", vm, "-v", "shared:/s", "busybox", "sleep", "1d").returncode == 0
        )
    # No caching in the guest (cache=none): a write is seen by the other VM at once.
    lab.out("sa", "echo from-a > /s/a")
    assert lab.out("sb", "cat /s/a") == "from-a\n"
    lab.out("sb", "echo from-b > /s/b && echo changed-and-longer > /s/a")
    assert lab.out("sa", "cat /s/b /s/a") == "from-b\nchanged-and-longer\n"
    result = lab.hyprd.hypr("volume", "rm", "shared")
    assert "in use" in one_line_error(result)
    assert "shared" in lab.volumes()
    lab.hyprd.ok("rm", "-f", "sa", "sb")
    lab.hyprd.ok("volume", "rm", "shared")
    assert "shared" not in lab.volumes()


def test_read_only_holds_on_the_host_side(lab: Lab, tmp_path: Path) -> None:
    host = tmp_path / "ro-bind"
    host.mkdir()
    (host / "kept").write_text("kept\n")
    result = lab.run(
        "-d", "--name", "ro", "-v", "rovol:/r:ro", "-v", f"{host}:/b:ro", "busybox", "sleep", "1d"
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for target in ("/r", "/b"):
        refused = lab.sh("ro", f"echo x > {target}/new")
        assert refused.returncode != 0 and "Read-only file system" in refused.stderr
        # Root in the guest may remount its side read-write; the host's side stays read-only.
        lab.out("ro", f"mount -o remount,rw {target}")
        still = lab.sh("ro", f"echo x > {target}/new")
        assert still.returncode != 0 and "Read-only file system" in still.stderr
    kept = lab.sh("ro", "rm /b/kept")
    assert kept.returncode != 0 and "Read-only file system" in kept.stderr
    assert list(lab.mountpoint("rovol").iterdir()) == []
    assert sorted(p.name for p in host.iterdir()) == ["kept"]
    assert lab.out("ro", "cat /b/kept") == "kept\n"
    lab.hyprd.ok("rm", "-f", "ro")


def test_bind_mount_follows_host_edits_both_ways(lab: Lab, tmp_path: Path) -> None:
    host = tmp_path / "src"
    host.mkdir()
    (host / "app.txt").write_text("v1\n")
    conf = tmp_path / "app.conf"
    conf.write_text("setting=1\n")
    result = lab.run(
        "-d", "--name", "dev", "-v", f"{host}:/src", "--mount",
        f"type=bind,source={conf},target=/etc/app.conf,readonly", "busybox", "sleep", "1d",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert lab.out("dev", "cat /src/app.txt /etc/app.conf") == "v1\nsetting=1\n"
    # An edit on the host is seen at once, whole: no stale size from a cache in the guest.
    (host / "app.txt").write_text("version 2, longer than the first\n")
    (host / "new.txt").write_text("new\n")
    expected = "version 2, longer than the first\nnew\n"
    assert lab.out("dev", "cat /src/app.txt /src/new.txt") == expected
    lab.out("dev", "echo from-guest > /src/out.txt")
    assert (host / "out.txt").read_text() == "from-guest\n"
    assert lab.sh("dev", "echo no > /etc/app.conf").returncode != 0
    assert conf.read_text() == "setting=1\n"
    lab.hyprd.ok("rm", "-f", "dev")
    assert (host / "out.txt").exists()  # a bind source is the user's: rm leaves it


def test_a_guest_cannot_follow_links_out_of_a_shared_folder(lab: Lab, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret\n")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "to-secret").symlink_to(secret)
    (shared / "to-root").symlink_to("/")
    (shared / "up").symlink_to("../..")
    result = lab.run(
        "--rm", "-v", f"{shared}:/s", "busybox", "sh", "-c",
        "cat /s/to-secret; cat /s/up/secret.txt; ls /s/to-root/; cat /s/../../etc/hostname",
    )  # fmt: skip
    # Each link resolves in the guest's own root, never on the host.
    assert "host secret" not in result.stdout
    assert str(tmp_path.name) not in result.stdout
    assert lab.root.name not in result.stdout
    assert "bin" in result.stdout  # the guest's own / (busybox's /bin)


def test_image_files_seed_a_new_volume(lab: Lab, tmp_path: Path) -> None:
    ref = volume_image(lab, tmp_path)
    before = lab.volumes()
    result = lab.run("-d", "--name", "seeded", "-v", "named-seed:/data", ref, "sleep 1d")
    assert result.returncode == 0, result.stderr
    assert lab.volumes() - before == {"named-seed"}  # -v covers the image's VOLUME
    data = lab.mountpoint("named-seed")
    assert (data / "file").read_text() == "hard linked\n"
    assert os.path.lexists(data / "hard")  # a link across layers is a symlink (images.md)
    assert os.readlink(data / "motd") == "/etc/motd"
    assert not (data / "gone.txt").exists()  # the upper layer's whiteout holds
    odd = (data / "odd").stat()
    assert (odd.st_uid, odd.st_gid, odd.st_mode & 0o7777) == (123, 456, 0o640)
    assert (data / "suid").stat().st_mode & 0o7777 == 0o4755
    # The guest sees the copied owner and mode: the image's user may not read it, root may.
    assert lab.sh("seeded", "cat /data/odd").returncode != 0
    assert lab.hyprd.ok("exec", "-u", "0", "seeded", "--", "cat", "/data/odd") == "odd owner\n"
    lab.hyprd.ok("rm", "-f", "seeded")
    # Not empty any more: a second VM sees what the volume holds, not the image's files.
    (data / "file").write_text("mine\n")
    again = lab.run("--rm", "-v", "named-seed:/data", ref, "cat /data/file")
    assert again.stdout == "mine\n", again.stderr
    nocopy = lab.run("--rm", "-v", "no-seed:/data:nocopy", ref, "ls -A /data | wc -l")
    assert nocopy.stdout.strip() == "0", nocopy.stderr


def test_an_image_volume_is_anonymous_and_goes_with_rm_v(lab: Lab, tmp_path: Path) -> None:
    ref = volume_image(lab, tmp_path)
    before = lab.volumes()
    assert lab.run("-d", "--name", "anon", ref, "sleep 1d").returncode == 0
    (anonymous,) = lab.volumes() - before
    assert len(anonymous) == 64 and all(c in "0123456789abcdef" for c in anonymous)
    assert (lab.mountpoint(anonymous) / "file").read_text() == "hard linked\n"
    mounts = lab.hyprd.inspect("anon")["mounts"]
    assert [(m["type"], m["source"], m["target"]) for m in mounts] == [
        ("volume", anonymous, "/data")
    ]
    lab.hyprd.ok("rm", "-f", "anon")
    assert anonymous in lab.volumes()  # rm without -v keeps it, as Docker does
    lab.hyprd.ok("volume", "rm", anonymous)

    assert lab.run("-d", "--name", "anon2", ref, "sleep 1d").returncode == 0
    assert len(lab.volumes() - before) == 1
    lab.hyprd.ok("rm", "-f", "-v", "anon2")
    assert lab.volumes() == before

    # A target the image lacks is made root's, as in Docker: write as root.
    once = lab.run("--rm", "-u", "0", "-v", "/scratch", ref, "echo hi > /scratch/x; echo done")
    assert once.stdout.strip() == "done", once.stderr
    wait_for(lambda: lab.volumes() == before)  # --rm takes its anonymous volumes along


def test_tmpfs_mounts(lab: Lab) -> None:
    result = lab.run(
        "--rm", "--tmpfs", "/scratch:size=8m,mode=1770", "--mount",
        "type=tmpfs,target=/t2,tmpfs-size=4m", "busybox", "sh", "-c",
        "df -k /scratch /t2 | tail -2; stat -c %a /scratch; echo x > /t2/f && cat /t2/f",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[0].split()[1] == "8192" and lines[1].split()[1] == "4096"
    assert lines[2:4] == ["1770", "x"]


def test_a_device_bind_volume_serves_its_directory(lab: Lab, tmp_path: Path) -> None:
    device = tmp_path / "device"
    device.mkdir()
    (device / "in.txt").write_text("from the device\n")
    lab.hyprd.ok(
        "volume", "create", "--opt", "type=none", "--opt", "o=bind", "--opt",
        f"device={device}", "devvol",
    )  # fmt: skip
    result = lab.run(
        "--rm", "-v", "devvol:/d", "busybox", "sh", "-c", "cat /d/in.txt; echo w > /d/w"
    )
    assert result.stdout == "from the device\n", result.stderr
    assert (device / "w").read_text() == "w\n"
    lab.hyprd.ok("volume", "rm", "devvol")
    assert (device / "in.txt").exists()  # the device directory is the user's


BAD_MOUNTS = [
    (["-v", "/no/such/dir:/x"], "does not exist"),
    (["-v", "newvol:/a", "-v", "/no/such/dir:/b/c"], "does not exist"),
    (["-v", "vol:relative"], "absolute"),
    (["-v", "vol:/"], "'/'"),
    (["-v", "vol:/x:bogus"], "unknown option"),
    (["-v", "vol-a:/x", "-v", "vol-b:/x/"], "duplicate mount point"),
    (["-v", "bad name:/x"], "invalid volume name"),
    (["-v", "/tmp/../etc:/x"], "'..'"),
    (["--mount", "type=bind,target=/x"], "needs a source"),
    (["--mount", "type=volume,source=v,target=/x,bogus=1"], "bogus"),
    (["--tmpfs", "/x:size=lots"], "invalid size"),
]


@pytest.mark.parametrize(("args", "message"), BAD_MOUNTS)
def test_bad_mounts_are_one_line_and_change_nothing(
    lab: Lab, args: list[str], message: str
) -> None:
    vms, volumes = lab.hyprd.ok("ps", "-aq"), lab.volumes()
    result = lab.run("--name", "bad", *args, "busybox", "true")
    assert message in one_line_error(result)
    assert lab.hyprd.ok("ps", "-aq") == vms
    assert lab.volumes() == volumes


def test_mounts_survive_a_killed_hyprd_and_no_file_server_outlives_its_vm(
    hyprd: Hyprd,
) -> None:
    hyprd.ok("run", "-d", "--name", "k", "-v", "kept:/k", "busybox", "sleep", "1d")
    servers = VirtiofsDaemons.find(hyprd.run_dir / "vms")
    assert len(servers) == 1
    hyprd.stop(signal.SIGKILL)
    hyprd.start()
    assert VirtiofsDaemons.find(hyprd.run_dir / "vms") == servers  # adopted, not restarted
    hyprd.ok("exec", "k", "--", "sh", "-c", "echo after > /k/f")
    volume = json.loads(hyprd.ok("volume", "inspect", "kept"))[0]
    assert (Path(volume["Mountpoint"]) / "f").read_text() == "after\n"
    hyprd.ok("stop", "-t", "1", "k")
    assert VirtiofsDaemons.find(hyprd.run_dir / "vms") == {}
    hyprd.ok("start", "k")
    assert hyprd.ok("exec", "k", "--", "cat", "/k/f") == "after\n"
    hyprd.ok("rm", "-f", "k")
    assert VirtiofsDaemons.find(hyprd.run_dir / "vms") == {}
