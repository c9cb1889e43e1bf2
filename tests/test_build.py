"""`hypr build` end to end: a real hyprd in its namespace builds Dockerfiles with real build
VMs (RUN), the image store and the cache, and the images run and show what the
Dockerfile put there. Bad input gets one line and leaves nothing behind."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hypr.sandbox import UPSTREAM_ADDRESS, Hyprd, add_upstream, create_netns, delete_netns, in_ns
from tests.oci_images import busybox_layers
from tests.registry import Registry, hyprd_with_registry

pytestmark = pytest.mark.vm

BUILD_TIMEOUT = 600


class Lab:
    def __init__(self, hyprd: Hyprd, registry: Registry, root: Path) -> None:
        self.hyprd = hyprd
        self.registry = registry
        self.root = root
        self.count = 0

    def context(self, dockerfile: str, files: dict[str, str] | None = None) -> Path:
        self.count += 1
        ctx = self.root / f"ctx{self.count}"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(dockerfile)
        for name, content in (files or {}).items():
            (ctx / name).parent.mkdir(parents=True, exist_ok=True)
            (ctx / name).write_text(content)
        return ctx

    def build(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.hyprd.hypr("build", *args, timeout=BUILD_TIMEOUT)

    def run(self, image: str, *argv: str) -> str:
        result = self.hyprd.hypr("run", "--rm", image, *argv, timeout=BUILD_TIMEOUT)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def build_vms(self) -> list[str]:
        """QEMU processes of build VMs in the daemon's namespace."""
        found = []
        for pid in in_ns(self.hyprd.netns, "ip", "netns", "pids", self.hyprd.netns,
                         check=False).stdout.split():  # fmt: skip
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(a.startswith(b"hypr-build-") for a in argv):
                found.append(pid)
        return found


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One daemon (and a registry) in one namespace for the module: boots are the cost."""
    root = tmp_path_factory.mktemp("build")
    with hyprd_with_registry(root) as (hyprd, registry):
        yield Lab(hyprd, registry, root)


def build_dirs(hyprd: Hyprd) -> list[Path]:
    """The runtime directories of build VMs (beside the VMs')."""
    return list((hyprd.run_dir / "vms").glob("build-*"))


def steps(output: str) -> dict[str, str]:
    """`#N` -> how the step ended (CACHED, DONE)."""
    ends = {}
    for line in output.splitlines():
        number, _, rest = line.partition(" ")
        if number.startswith("#") and (rest == "CACHED" or rest.startswith("DONE")):
            ends[number] = rest.split()[0]
    return ends


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("Error: "), result.stderr
    return result.stderr


DOCKERFILE = """\
# syntax=docker/dockerfile:1
FROM busybox AS base
ARG GREETING=hello
ENV APP_HOME=/srv/app \\
    MODE="production mode"
WORKDIR $APP_HOME
COPY --chmod=0755 bin/ ./bin/
COPY config.txt data/*.dat ./
RUN echo "$GREETING from $MODE" > built.txt \\
 && rm /bin/vi \\
 && echo "app:x:1500:1500::/home/app:/bin/sh" >> /etc/passwd \\
 && echo "app:x:1500:" >> /etc/group
COPY --chown=app:app config.txt owned.txt
USER app
EXPOSE 8080/tcp
LABEL org.example.role=web
STOPSIGNAL SIGQUIT
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat built.txt; id -u; pwd"]
"""


def test_single_stage_build_runs_with_what_the_dockerfile_put_there(lab: Lab) -> None:
    ctx = lab.context(DOCKERFILE, {
        "bin/tool": "#!/bin/sh\necho tool-ran\n", "config.txt": "key=value\n",
        "data/a.dat": "A", "data/b.dat": "B", "data/skip.txt": "no",
    })  # fmt: skip
    result = lab.build("-t", "app:1", "-t", "app:latest", "--build-arg", "GREETING=hi", str(ctx))
    assert result.returncode == 0, result.stderr
    assert "#7 [base 7/14] RUN echo" in result.stdout
    assert "Successfully tagged app:1" in result.stdout

    out = lab.run("app:1").split()
    assert out[:4] == ["hi", "from", "production", "mode"]
    assert out[4:] == ["1500", "/srv/app"]
    listing = lab.run("app:latest", "ls -ln /srv/app /srv/app/bin; cat /srv/app/a.dat "
                      "/srv/app/b.dat; ls /srv/app/skip.txt; ls /bin/vi; ./bin/tool")  # fmt: skip
    assert "AB" in listing and "tool-ran" in listing
    assert "/srv/app/skip.txt: No such file or directory" in listing  # not matched by *.dat
    assert "/bin/vi: No such file or directory" in listing  # deleted by RUN: a whiteout
    owned = next(line for line in listing.splitlines() if line.endswith("owned.txt"))
    assert owned.split()[2:4] == ["1500", "1500"]
    tool = next(line for line in listing.splitlines() if line.endswith(" tool"))
    assert tool.startswith("-rwxr-xr-x")

    image = json.loads(lab.hyprd.ok("image", "inspect", "app:1"))[0]
    config = image["Config"]
    assert "APP_HOME=/srv/app" in config["Env"] and "MODE=production mode" in config["Env"]
    assert not any(e.startswith("GREETING=") for e in config["Env"])  # ARGs stay out
    assert config["WorkingDir"] == "/srv/app" and config["User"] == "app"
    assert config["ExposedPorts"] == {"8080/tcp": {}}
    assert config["Labels"] == {"org.example.role": "web"}
    assert config["StopSignal"] == "SIGQUIT"
    assert config["Entrypoint"] == ["/bin/sh", "-c"]

    history = lab.hyprd.ok("history", "--no-trunc", "app:1").splitlines()
    assert history[0].split()[:4] == ["IMAGE", "CREATED", "CREATED", "BY"]
    assert any("RUN /bin/sh -c echo" in line for line in history)
    assert any("COPY --chown=app:app config.txt owned.txt" in line for line in history)


def test_unchanged_rebuild_is_all_cached_and_a_changed_file_rebuilds_from_its_copy(
    lab: Lab,
) -> None:
    dockerfile = (
        "FROM busybox\nENV A=1\nCOPY one.txt /one.txt\nRUN cat /one.txt > /copy1\n"
        'COPY two.txt /two.txt\nRUN cat /two.txt > /copy2\nCMD ["cat", "/copy2"]\n'
    )
    ctx = lab.context(dockerfile, {"one.txt": "one", "two.txt": "two"})
    first = lab.build("-t", "cache:1", str(ctx))
    assert first.returncode == 0, first.stderr
    assert "CACHED" not in first.stdout

    again = lab.build("-t", "cache:2", str(ctx))
    assert again.returncode == 0, again.stderr
    ends = steps(again.stdout)
    assert [ends[f"#{n}"] for n in range(2, 8)] == ["CACHED"] * 6
    ids = json.loads(lab.hyprd.ok("image", "inspect", "cache:1", "cache:2"))
    assert ids[0]["Id"] == ids[1]["Id"]

    (ctx / "two.txt").write_text("changed\n")
    changed = lab.build("-t", "cache:3", str(ctx))
    assert changed.returncode == 0, changed.stderr
    ends = steps(changed.stdout)
    assert [ends[f"#{n}"] for n in range(2, 8)] == ["CACHED"] * 3 + ["DONE"] * 3
    assert lab.run("cache:3").strip() == "changed"

    no_cache = lab.build("--no-cache", "-t", "cache:4", str(ctx))
    assert no_cache.returncode == 0 and "CACHED" not in no_cache.stdout


def test_multi_stage_builds_only_what_the_target_needs(lab: Lab) -> None:
    dockerfile = """\
FROM busybox AS builder
RUN mkdir -p /out && echo compiled > /out/app && chmod 700 /out/app
FROM busybox AS broken
RUN exit 3
FROM scratch AS final
COPY --from=builder /out/app /app
COPY --from=0 /bin/busybox /bin/busybox
FROM builder AS debug
RUN echo debug > /out/debug
"""
    ctx = lab.context(dockerfile)
    result = lab.build("--target", "final", "-t", "multi:final", str(ctx))
    assert result.returncode == 0, result.stderr
    assert "[broken" not in result.stdout  # not needed by the target: not built
    assert "[debug" not in result.stdout
    out = lab.run("multi:final", "/bin/busybox", "sh", "-c", "cat /app; ls -l /app; ls /")
    assert out.splitlines()[0] == "compiled"
    assert out.splitlines()[1].startswith("-rwx------")
    layers = json.loads(lab.hyprd.ok("image", "inspect", "multi:final"))[0]["RootFS"]["Layers"]
    assert len(layers) == 2  # FROM scratch: only the two COPY layers

    debug = lab.build("-t", "multi:debug", str(ctx))  # the last stage, from another stage
    assert debug.returncode == 0, debug.stderr
    assert "[broken" not in debug.stdout
    assert lab.run("multi:debug", "cat", "/out/app", "/out/debug").split() == ["compiled", "debug"]


def test_dockerignore_keeps_files_out_of_the_context(lab: Lab) -> None:
    ctx = lab.context("FROM busybox\nCOPY . /ctx/\n", {
        ".dockerignore": "secret*\nlogs/\n!logs/keep.log\n", "app.py": "print()",
        "secret.key": "s3cret", "logs/a.log": "a", "logs/keep.log": "keep",
    })  # fmt: skip
    result = lab.build("-t", "ignored:1", str(ctx))
    assert result.returncode == 0, result.stderr
    files = lab.run("ignored:1", "find", "/ctx", "-type", "f").split()
    assert sorted(files) == ["/ctx/.dockerignore", "/ctx/Dockerfile", "/ctx/app.py",
                             "/ctx/logs/keep.log"]  # fmt: skip


def test_a_failing_run_fails_the_build_and_leaves_nothing(lab: Lab) -> None:
    ctx = lab.context("FROM busybox\nRUN echo first-line && echo to-stderr >&2 && exit 42\n")
    before = lab.hyprd.ok("images", "-q")
    result = lab.build("-t", "failing:1", str(ctx))
    error = one_line_error(result).splitlines()
    assert "Dockerfile:2" in error[0] and "exit code 42" in error[0]
    assert "first-line" in result.stderr and "to-stderr" in result.stderr  # the last lines
    assert lab.hyprd.hypr("image", "inspect", "failing:1").returncode != 0
    assert lab.hyprd.ok("images", "-q") == before
    assert lab.build_vms() == []
    assert build_dirs(lab.hyprd) == []


@pytest.mark.parametrize(
    ("dockerfile", "files", "args", "expected"),
    [
        ("FROM busybox\nFROBNICATE x\n", {}, [], "Dockerfile:2: unknown instruction: FROBNICATE"),
        ("FROM busybox\nCOPY ../x /x\n", {}, [], "outside the build context"),
        ("FROM busybox\nCOPY /etc/passwd /x\n", {}, [], "outside the build context"),
        ("FROM busybox\nCOPY link /x\n", {"link": "->/etc/passwd"}, [], "leaves the build context"),
        ("FROM busybox\nCOPY missing.txt /x\n", {}, [], "missing.txt: no such file"),
        ("FROM busybox\nCOPY --from=nowhere /x /x\n", {}, [], "nowhere"),
        ("FROM no-such-image:1\n", {}, [], "Dockerfile:1: FROM"),
        ("FROM busybox\n", {}, ["--build-arg", "=x"], "--build-arg '=x': expected KEY=VALUE"),
        ("FROM busybox\n", {}, ["-f", "Nope"], "Nope"),
    ],
)
def test_bad_input_gets_one_line_and_changes_nothing(
    lab: Lab, dockerfile: str, files: dict[str, str], args: list[str], expected: str
) -> None:
    links = {k: v[2:] for k, v in files.items() if v.startswith("->")}
    ctx = lab.context(dockerfile, {k: v for k, v in files.items() if k not in links})
    for name, target in links.items():
        (ctx / name).symlink_to(target)
    if "-f" in args:
        args = ["-f", str(ctx / args[1])]
    before = lab.hyprd.ok("images", "-q")
    result = lab.build("-t", "bad:1", *args, str(ctx))
    assert expected in one_line_error(result), result.stderr
    assert lab.hyprd.ok("images", "-q") == before


HTTP_SERVER = (
    "import http.server, socketserver\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        self.send_response(200); self.end_headers(); self.wfile.write(b'from-upstream')\n"
    "s = socketserver.TCPServer(('0.0.0.0', 8000), H)\n"
    "print('ready', flush=True)\n"
    "s.serve_forever()\n"
)


def test_run_has_no_network_but_the_build_proxy_which_logs_it(lab: Lab) -> None:
    upstream = create_netns()
    server = None
    try:
        add_upstream(lab.hyprd.netns, upstream)
        server = subprocess.Popen(["ip", "netns", "exec", upstream, sys.executable, "-c",
                                   HTTP_SERVER], stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        url = f"http://{UPSTREAM_ADDRESS}:8000/page"
        direct = lab.context(
            f"FROM busybox\nRUN unset http_proxy HTTP_PROXY; timeout 5 wget -qO- {url}\n"
        )
        refused = lab.build("--no-cache", str(direct))
        assert refused.returncode != 0, refused.stdout
        proxied = lab.context(
            f"FROM busybox\nRUN timeout 20 wget -qO /fetched {url}\nADD {url}?add /added\n"
        )
        result = lab.build("--no-cache", "-t", "proxied:1", str(proxied))
        assert result.returncode == 0, result.stderr
        assert lab.run("proxied:1", "cat", "/fetched").startswith("from-upstream")
        assert lab.run("proxied:1", "cat", "/added").startswith("from-upstream")
        assert f"build proxy: GET {url} -> 200" in lab.hyprd.log()
        assert f"build proxy: GET {url}?add -> 200" in lab.hyprd.log()  # ADD's too
        natted = lab.build("--no-cache", "--network", "default", str(direct))
        assert natted.returncode == 0, natted.stderr  # a NIC with NAT: straight there
    finally:
        if server is not None:
            server.kill()
            server.wait()
        delete_netns(upstream)


def layer_entries(lab: Lab, diff_id: str) -> list[str]:
    """The entries of a stored layer (rdsquashfs's listing: `kind path ...`)."""
    name = diff_id.removeprefix("sha256:") + ".squashfs"
    path = lab.hyprd.data_dir / "images" / "layers" / name
    listing = subprocess.run(["rdsquashfs", "-d", str(path)], capture_output=True, text=True)
    return [" ".join(line.split()[:2]) for line in listing.stdout.splitlines()]


STEPS = """\
FROM busybox
RUN echo one > /a && mkdir /dir && echo kept > /dir/kept
RUN rm /a && echo two > /b && rm -rf /dir && mkdir /dir && echo new > /dir/new
RUN <<END
echo three > /c
cat /b /dir/new > /d
END
"""


def test_run_steps_share_a_vm_and_each_layer_holds_only_its_own_changes(lab: Lab) -> None:
    result = lab.build("-t", "steps:1", str(lab.context(STEPS)))
    assert result.returncode == 0, result.stderr
    layers = json.loads(lab.hyprd.ok("image", "inspect", "steps:1"))[0]["RootFS"]["Layers"]
    first, second, third = (layer_entries(lab, d) for d in layers[-3:])
    assert "file a" in first and "file dir/kept" in first
    assert "nod a" in second and "file b" in second  # the whiteout of /a
    assert "file dir/new" in second and "file dir/kept" not in second
    assert "file c" in third and "file d" in third
    assert not any(e.endswith((" b", " a", " dir/new")) for e in third)
    out = lab.run("steps:1", "sh", "-c", "ls /a /dir; cat /b /c /d")
    assert "/a: No such file or directory" in out and "kept" not in out
    assert out.split()[-4:] == ["two", "three", "two", "new"]


def test_from_a_pulled_image_add_of_a_tar_and_a_heredoc(lab: Lab) -> None:
    ref = lab.registry.push(busybox_layers(), "latest", "base/busybox")
    ctx = lab.context(f"FROM {ref}\nADD bundle.tar /opt/\nCOPY <<END /etc/motd\nhello\nEND\n")
    with tarfile.open(ctx / "bundle.tar", "w") as tar:
        data = b"inside the tar\n"
        info = tarfile.TarInfo("pkg/readme")
        info.size, info.uid, info.gid = len(data), 42, 43
        tar.addfile(info, io.BytesIO(data))
    result = lab.build("-t", "pulled:1", str(ctx))
    assert result.returncode == 0, result.stderr
    # the image's entrypoint is ["/bin/sh", "-c"]: one argument, a script
    out = lab.run("pulled:1", "cat /opt/pkg/readme /etc/motd; ls -ln /opt/pkg")
    assert "inside the tar" in out and "hello" in out
    assert " 42 " in out and " 43 " in out  # ADD keeps the archive's owners
    assert lab.run("pulled:1", "cat /data/file").startswith("hard linked")  # the base's files


def test_the_docker_cli_builds_and_shows_the_history(lab: Lab) -> None:
    ctx = lab.context('FROM busybox\nRUN echo docker-built > /x\nCMD ["cat", "/x"]\n')
    env = {**lab.hyprd.docker_env, "DOCKER_BUILDKIT": "0"}
    built = subprocess.run(["docker", "build", "-t", "dk:1", str(ctx)], env=env,
                           capture_output=True, text=True, timeout=BUILD_TIMEOUT)  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert "Successfully tagged dk:1" in built.stdout
    history = lab.hyprd.docker("history", "--no-trunc", "dk:1")
    assert history.returncode == 0 and "RUN /bin/sh -c echo docker-built" in history.stdout
    assert lab.run("dk:1").startswith("docker-built")
    bad = subprocess.run(["docker", "build", str(lab.context("FROM busybox\nNOPE\n"))], env=env,
                         capture_output=True, text=True, timeout=BUILD_TIMEOUT)  # fmt: skip
    assert bad.returncode != 0 and "unknown instruction: NOPE" in bad.stderr


def test_builder_prune_empties_the_cache(lab: Lab) -> None:
    ctx = lab.context("FROM busybox\nRUN echo cached > /p\n")
    assert lab.build("-t", "prune:1", str(ctx)).returncode == 0
    assert "CACHED" in lab.build(str(ctx)).stdout
    lab.hyprd.ok("builder", "prune", "-f")
    assert "CACHED" not in lab.build(str(ctx)).stdout


COMPOSE = """\
services:
  web:
    build:
      context: ./web
      dockerfile: web.Dockerfile
      target: final
      args: [GREETING=from-compose, FROM_ENV]
      labels: {org.example.built-by: compose}
    command: ["sleep", "3600"]
  tool:
    build: ./tool
    image: tools/tool:1
    command: ["sleep", "3600"]
"""


def test_compose_builds_what_services_need(lab: Lab) -> None:
    project = lab.root / "stack"
    (project / "web").mkdir(parents=True)
    (project / "tool").mkdir()
    (project / "compose.yaml").write_text(COMPOSE)
    (project / "web" / "web.Dockerfile").write_text(
        "FROM busybox AS final\nARG GREETING\nARG FROM_ENV\n"
        'RUN echo "$GREETING $FROM_ENV" > /greeting\nFROM final AS unused\nRUN exit 1\n'
    )
    (project / "tool" / "Dockerfile").write_text("FROM busybox\nCOPY . /tool/\n")
    (project / "tool" / "data.txt").write_text("tool data\n")
    compose = ("compose", "-f", str(project / "compose.yaml"), "-p", "built")
    env_before = dict(lab.hyprd.extra_env)
    lab.hyprd.extra_env["FROM_ENV"] = "and-env"
    try:
        build = lab.hyprd.hypr(*compose, "build", timeout=BUILD_TIMEOUT)
    finally:
        lab.hyprd.extra_env.clear()
        lab.hyprd.extra_env.update(env_before)
    assert build.returncode == 0, build.stderr
    assert "Successfully tagged built-web:latest" in build.stdout
    assert "Successfully tagged tools/tool:1" in build.stdout
    labels = json.loads(lab.hyprd.ok("image", "inspect", "built-web"))[0]["Config"]["Labels"]
    assert labels == {"org.example.built-by": "compose"}

    up = lab.hyprd.hypr(*compose, "up", "-d", timeout=BUILD_TIMEOUT)
    assert up.returncode == 0, up.stderr
    assert "Building" not in up.stderr  # both images are there: nothing to build
    assert lab.hyprd.ok("exec", "built-web-1", "cat", "/greeting").strip() == "from-compose and-env"
    assert lab.hyprd.ok("exec", "built-tool-1", "cat", "/tool/data.txt").strip() == "tool data"

    rebuilt = lab.hyprd.hypr(*compose, "up", "-d", "--build", timeout=BUILD_TIMEOUT)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "Building web" in rebuilt.stderr and "CACHED" in rebuilt.stderr
    assert lab.hyprd.hypr(*compose, "down").returncode == 0


def test_two_builds_of_one_thing_do_the_work_once(lab: Lab) -> None:
    ctx = lab.context("FROM busybox\nRUN echo once > /once\n")
    procs = [
        subprocess.Popen([str(Path(sys.executable).parent / "hypr"), "build", "-t", f"twice:{i}",
                          str(ctx)], env=lab.hyprd.env, stdout=subprocess.PIPE, text=True)
        for i in range(2)
    ]  # fmt: skip
    outputs = [proc.communicate(timeout=BUILD_TIMEOUT)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0]
    run_step = sorted(steps(out)["#2"] for out in outputs)
    assert run_step == ["CACHED", "DONE"]  # one VM ran the step; the other build reused it


def test_a_daemon_killed_during_a_build_leaves_nothing_after_its_restart(
    hyprd: Hyprd, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo started && sleep 600\n")
    argv = [str(Path(sys.executable).parent / "hypr"), "build", "-t", "killed:1", str(ctx)]
    proc = subprocess.Popen(argv, env=hyprd.env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.rstrip().endswith(" started"):
            break
    assert build_dirs(hyprd) != []
    hyprd.stop(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    hyprd.start()
    lab = Lab(hyprd, None, tmp_path)  # type: ignore[arg-type]
    assert lab.build_vms() == []
    assert build_dirs(hyprd) == []
    assert list((hyprd.data_dir / "builds").iterdir()) == []
    assert hyprd.hypr("image", "inspect", "killed:1").returncode != 0
