"""Logs, attach and exec through the Docker face, with the real `docker` CLI and the Docker
SDK (the system Python's docker 7) against a hyprd in a namespace: output framing, exit
codes, stdin, TTYs, following logs, and `docker run` attached."""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from hypr.sandbox import Hyprd, create_netns, delete_netns, wait_for

pytestmark = pytest.mark.vm

SYSTEM_PYTHON = "/usr/bin/python3"  # has the docker SDK 7.1
BOOT_TIMEOUT = 120


@dataclass
class Lab:
    hyprd: Hyprd

    def docker(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.hyprd.docker(*args, input=input)

    def ok(self, *args: str, input: str | None = None) -> str:
        result = self.docker(*args, input=input)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def raw_stdout(self, *args: str) -> bytes:
        """The CLI's stdout as bytes (text mode would turn a terminal's \\r\\n into \\n)."""
        result = subprocess.run(
            ["docker", *args], env=self.hyprd.docker_env, capture_output=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def sdk(self, script: str) -> object:
        """Run a Docker SDK script (it prints one JSON value) with DOCKER_HOST set."""
        prelude = "import docker, json\nclient = docker.from_env()\n"
        result = subprocess.run(
            [SYSTEM_PYTHON, "-c", prelude + textwrap.dedent(script)],
            env=self.hyprd.docker_env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One daemon and one long-running VM `x` for the module: boots are the cost."""
    root = tmp_path_factory.mktemp("docker-streams")
    ns = create_netns()
    try:
        hyprd = Hyprd(ns, root / "daemon")
        hyprd.start()
        script = "echo one; echo two; echo three; while :; do sleep 1; done"
        hyprd.ok("run", "-d", "--name", "x", "busybox", "sh", "-c", script)
        wait_for(lambda: "three" in hyprd.ok("logs", "x"), timeout=BOOT_TIMEOUT)
        yield Lab(hyprd)
    finally:
        delete_netns(ns)


# --- exec ------------------------------------------------------------------------------


def test_exec_output_exit_code_and_streams(lab: Lab) -> None:
    assert lab.ok("exec", "x", "cat", "/etc/hostname") == "x\n"
    assert lab.docker("exec", "x", "sh", "-c", "exit 3").returncode == 3
    result = lab.docker("exec", "x", "sh", "-c", "echo out; echo err >&2; exit 4")
    assert (result.returncode, result.stdout, result.stderr) == (4, "out\n", "err\n")
    missing = lab.docker("exec", "x", "no-such-program")
    assert missing.returncode == 127 and "executable file not found" in missing.stderr


def test_exec_env_workdir_user(lab: Lab) -> None:
    out = lab.ok("exec", "-e", "A=1", "-w", "/tmp", "-u", "nobody", "x", "sh", "-c",
                 'echo "$A $(pwd) $(id -un)"')  # fmt: skip
    assert out == "1 /tmp nobody\n"


def test_exec_stdin_until_eof(lab: Lab) -> None:
    assert lab.ok("exec", "-i", "x", "cat", input="hello\nworld\n") == "hello\nworld\n"
    big = "x" * 300_000  # several agent frames, and the CLI's half-close at the end
    assert lab.ok("exec", "-i", "x", "wc", "-c", input=big).strip() == "300000"


def test_exec_tty_is_a_real_pty(lab: Lab) -> None:
    # -t without -i works from a script; the stream is raw, stderr on it too.
    out = lab.raw_stdout("exec", "-t", "x", "sh", "-c", "tty; echo err >&2")
    assert out == b"/dev/pts/0\r\nerr\r\n"
    assert lab.docker("exec", "-t", "x", "sh", "-c", "exit 5").returncode == 5


def test_exec_detached(lab: Lab) -> None:
    lab.ok("exec", "-d", "x", "sh", "-c", "echo bg > /tmp/bg")
    wait_for(lambda: lab.docker("exec", "x", "cat", "/tmp/bg").stdout == "bg\n", timeout=30)


def test_exec_ends_137_when_its_vm_stops(lab: Lab) -> None:
    lab.hyprd.ok("run", "-d", "--name", "brief", "busybox", "sleep", "4")
    result = lab.docker("exec", "brief", "sleep", "60")
    assert result.returncode == 137, result.stderr  # killed with the VM, as Docker reports


def test_exec_refusals(lab: Lab) -> None:
    privileged = lab.docker("exec", "--privileged", "x", "true")
    assert privileged.returncode != 0 and "privileged" in privileged.stderr
    unknown = lab.docker("exec", "nope", "true")
    assert unknown.returncode != 0 and "No such container: nope" in unknown.stderr


def test_sdk_exec_run(lab: Lab) -> None:
    got = lab.sdk("""
        x = client.containers.get("x")
        code, out = x.exec_run("echo hi")
        demuxed = x.exec_run(["sh", "-c", "echo o; echo e >&2; exit 2"], demux=True)
        tty = x.exec_run("tty", tty=True)
        print(json.dumps([
            [code, out.decode()],
            [demuxed.exit_code, [part.decode() for part in demuxed.output]],
            [tty.exit_code, tty.output.decode()],
        ]))
    """)
    assert got == [[0, "hi\n"], [2, ["o\n", "e\n"]], [0, "/dev/pts/0\r\n"]]


def test_sdk_exec_resize_and_inspect(lab: Lab) -> None:
    got = lab.sdk("""
        import time
        api = client.api
        exec_id = api.exec_create("x", ["sh", "-c", "sleep 2; stty size"], tty=True)["Id"]
        sock = api.exec_start(exec_id, tty=True, socket=True)
        api.exec_resize(exec_id, height=33, width=111)
        running = api.exec_inspect(exec_id)["Running"]
        out = b""
        while chunk := sock.read(4096):  # a SocketIO on a Unix socket
            out += chunk
        info = api.exec_inspect(exec_id)
        print(json.dumps([running, out.decode(), info["Running"], info["ExitCode"],
                          info["ProcessConfig"]["tty"], info["ContainerID"]]))
    """)
    vm_id = lab.hyprd.inspect("x")["id"]
    assert got == [True, "33 111\r\n", False, 0, True, vm_id]


# --- logs ------------------------------------------------------------------------------


def test_logs_and_tail(lab: Lab) -> None:
    assert lab.ok("logs", "x") == "one\ntwo\nthree\n"
    assert lab.ok("logs", "--tail", "2", "x") == "two\nthree\n"
    refused = lab.docker("logs", "-t", "x")
    assert refused.returncode != 0 and "no time for each line" in refused.stderr


def test_logs_follow_ends_when_the_vm_stops(lab: Lab) -> None:
    lab.hyprd.ok("run", "-d", "--name", "talker", "busybox", "sh", "-c",
                 "for i in 1 2 3; do echo line $i; sleep 1; done")  # fmt: skip
    result = lab.docker("logs", "-f", "talker")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "line 1\nline 2\nline 3\n"
    assert lab.hyprd.inspect("talker")["state"] == "exited"

    # Attached to an exited container, the stream waits for the run that start begins.
    again = lab.docker("start", "-a", "talker")
    assert (again.returncode, again.stdout) == (0, "line 1\nline 2\nline 3\n"), again.stderr


# --- docker run, attached (needs create, start and wait from the containers module) ------


def test_run_attached_streams_until_exit_with_its_code(lab: Lab) -> None:
    result = lab.docker("run", "--rm", "busybox", "sh", "-c", "echo hi; echo err >&2; exit 3")
    assert result.returncode == 3, result.stderr
    assert result.stdout == "hi\nerr\n"  # the console mixes stderr into stdout (see docs)


def test_run_with_a_tty_gets_the_console_raw(lab: Lab) -> None:
    out = lab.raw_stdout("run", "-t", "--rm", "busybox", "sh", "-c", "echo on-the-console")
    assert out == b"on-the-console\n"  # no stdcopy headers; the console keeps "\n" ends


def test_run_with_stdin_is_refused(lab: Lab) -> None:
    result = lab.docker("run", "-i", "--rm", "busybox", "cat", input="hi\n")
    assert result.returncode != 0 and "stdin" in result.stderr
