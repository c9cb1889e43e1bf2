"""Compose files as Docker Compose reads them (pure logic): several files merged, override
files, `!reset`/`!override`, extends, include, profiles, replicas; and a corpus of real
files (tests/data/compose, see ORIGIN.md) with expectations taken from the specification."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from hypr.compose.files import Options, active_profiles, find_sources
from hypr.compose.loader import load_document
from hypr.compose.merge import load_yaml, merge, strip_tags
from hypr.compose.project import HostPaths, Project, load_project
from hypr.compose.select import Selection
from hypr.errors import InvalidArgument

CORPUS = Path(__file__).parent / "data" / "compose"


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def load(cwd: Path, env: dict[str, str] | None = None, **options: Any) -> Project:
    """What `hypr compose config` loads: the files, then the project (errors located)."""
    selection = options.pop("selection", Selection())
    stdin = options.pop("stdin", "")
    sources = find_sources(Options(**options), cwd, env or {})
    document = load_document(sources, lambda: stdin, cwd)
    try:
        profiles = active_profiles(Options(**options), sources.env)
        chosen = Selection(profiles, selection.services, selection.scale, selection.no_deps)
        paths = HostPaths(str(sources.project_dir), "/home/me")
        return load_project(document.document, "p", paths, chosen)
    except InvalidArgument as exc:
        raise document.locate(exc) from None


def merged(*texts: str) -> Any:
    result: Any = {}
    for i, text in enumerate(texts):
        result = merge(result, load_yaml(text, f"f{i}.yaml"))
    return strip_tags(result)


# --- merge rules ---------------------------------------------------------------------------


def test_mappings_merge_and_sequences_append_with_unique_keys() -> None:
    result = merged(
        "services:\n  a:\n    image: x\n    command: [a, b]\n    ports: ['8080:80', '53:53/udp']\n"
        "    environment: [A=1, B=2]\n    dns: [1.1.1.1]\n    volumes: ['./d:/data', 'v:/v']\n",
        "services:\n  a:\n    command: [c]\n    ports: [{target: 80, published: 8080}, '9:9']\n"
        "    environment: {B: three, C: '4'}\n    dns: [8.8.8.8]\n    volumes: ['./e:/data:ro']\n",
    )["services"]["a"]
    assert result["image"] == "x"
    assert result["command"] == ["c"]  # replaced, not appended
    assert result["ports"] == [{"target": 80, "published": 8080}, "53:53/udp", "9:9"]
    assert result["environment"] == {"A": "1", "B": "three", "C": "4"}
    assert result["dns"] == ["1.1.1.1", "8.8.8.8"]
    assert result["volumes"] == ["./e:/data:ro", "v:/v"]  # by target, in the first place


def test_reset_and_override_tags() -> None:
    result = merged(
        "services:\n  a:\n    image: x\n    ports: ['1:1', '2:2']\n    labels: {k: v}\n"
        "    command: sleep 1\n",
        "services:\n  a:\n    ports: !override ['3:3']\n    labels: !reset {}\n"
        "    command: !reset\n",
    )["services"]["a"]
    assert result == {"image": "x", "ports": ["3:3"]}


def test_named_lists_merge_as_mappings() -> None:
    result = merged(
        "services:\n  a:\n    networks: [front]\n    depends_on: [db]\n    build: ./app\n",
        "services:\n  a:\n    networks: {back: {aliases: [x]}}\n"
        "    depends_on: {cache: {condition: service_healthy}}\n"
        "    build: {dockerfile: Other, args: [V=1]}\n",
    )["services"]["a"]
    assert result["networks"] == {"front": None, "back": {"aliases": ["x"]}}
    assert result["depends_on"] == {
        "db": {"condition": "service_started", "required": True},
        "cache": {"condition": "service_healthy"},
    }
    assert result["build"] == {"context": "./app", "dockerfile": "Other", "args": ["V=1"]}


# --- files ---------------------------------------------------------------------------------


def test_override_file_beside_the_default_one_found_walking_up(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "compose.yaml": "services:\n  web:\n    image: busybox\n    environment: [MODE=base]\n",
            "compose.override.yaml": "services:\n  web:\n    environment: [MODE=override]\n",
            "sub/dir/.keep": "",
        },
    )
    project = load(tmp_path / "sub" / "dir")
    assert project.service("web").env == ["MODE=override"]


def test_several_files_compose_file_and_project_directory(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "base.yaml": "services:\n  a:\n    image: busybox\n    volumes: ['./data:/data']\n",
            "extra.yaml": "services:\n  a:\n    command: [sleep, '1']\n",
        },
    )
    project = load(tmp_path, env={"COMPOSE_FILE": "base.yaml:extra.yaml"})
    service = project.service("a")
    assert service.command == ["sleep", "1"] and service.image == "busybox"
    assert service.mounts[0].source == str(tmp_path / "data")
    env = {"COMPOSE_FILE": "base.yaml;extra.yaml", "COMPOSE_PATH_SEPARATOR": ";"}
    sources = find_sources(Options(project_directory="/srv"), tmp_path, env)
    assert [Path(f).name for f in sources.files] == ["base.yaml", "extra.yaml"]
    assert sources.project_dir == Path("/srv")


def test_stdin_is_a_file(tmp_path: Path) -> None:
    write(tmp_path, {"compose.yaml": "services:\n  a:\n    image: busybox\n"})
    project = load(tmp_path, files=("compose.yaml", "-"), stdin="services:\n  b:\n    image: x\n")
    assert sorted(s.name for s in project.services) == ["a", "b"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "services:\n  a:\n    ports: ['80:80', 'x:1']\n",
            "extra.yaml: services.a.ports[1]: invalid port spec 'x:1'",
        ),
        (
            "services:\n  b:\n    command: [true]\n",
            "extra.yaml: services.b.image: this key is required",
        ),
        ("services:\n  a:\n    image: [1]\n", "extra.yaml: services.a.image: cannot merge"),
        ("services:\n  a: [oops]\n", "extra.yaml: services.a: expected a mapping"),
        ("services: [\n", "extra.yaml: invalid YAML"),
    ],
)
def test_bad_input_names_the_file_and_the_path(tmp_path: Path, extra: str, message: str) -> None:
    write(
        tmp_path,
        {"compose.yaml": "services:\n  a:\n    image: busybox\n", "extra.yaml": extra},
    )
    with pytest.raises(InvalidArgument) as info:
        load(tmp_path, files=("compose.yaml", "extra.yaml"))
    assert message in info.value.message and "\n" not in info.value.message


# --- extends and include -------------------------------------------------------------------


def test_extends_another_file_resolves_its_paths_there(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "compose.yaml": "services:\n  web:\n    extends: {file: lib/base.yaml, service: app}\n"
            "    environment: [OWN=1]\n",
            "lib/base.yaml": "services:\n  app:\n    image: busybox\n    env_file: app.env\n"
            "    volumes: ['./static:/srv']\n",
            "lib/app.env": "FROM_FILE=yes\n",
        },
    )
    web = load(tmp_path).service("web")
    assert sorted(web.env) == ["FROM_FILE=yes", "OWN=1"]
    assert web.mounts[0].source == str(tmp_path / "lib" / "static")


def test_extends_cycles_are_refused_with_the_chain(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "compose.yaml": "services:\n  a:\n    extends: b\n  b:\n    extends: c\n"
            "  c:\n    extends: a\n",
        },
    )
    with pytest.raises(InvalidArgument) as info:
        load(tmp_path)
    assert info.value.message == (
        "compose.yaml: services.a.extends: extends cycle: a in compose.yaml -> "
        "b in compose.yaml -> c in compose.yaml -> a in compose.yaml"
    )


def test_include_brings_a_project_with_its_own_directory_and_env(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "compose.yaml": "include: [db/compose.yaml]\nservices:\n  app:\n    image: busybox\n"
            "    depends_on: [db]\n",
            "db/compose.yaml": "services:\n  db:\n    image: 'busybox:${TAG}'\n"
            "    volumes: ['./data:/var/lib/db']\nvolumes:\n  unused: {}\n",
            "db/.env": "TAG=1.36\n",
        },
    )
    project = load(tmp_path)
    db = project.service("db")
    assert db.image == "busybox:1.36"
    assert db.mounts[0].source == str(tmp_path / "db" / "data")
    assert [s.name for s in project.services] == ["db", "app"]


def test_include_conflicts_and_missing_files_are_refused(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "compose.yaml": "include: [other.yaml]\nservices:\n  a:\n    image: busybox\n",
            "other.yaml": "services:\n  a:\n    image: alpine\n",
            "missing.yaml": "include: [nowhere.yaml]\nservices:\n  a:\n    image: busybox\n",
        },
    )
    with pytest.raises(InvalidArgument, match=re.escape("compose.yaml: services.a: conflicts")):
        load(tmp_path)
    with pytest.raises(InvalidArgument, match=re.escape("included file nowhere.yaml not found")):
        load(tmp_path, files=("missing.yaml",))


# --- profiles and replicas -----------------------------------------------------------------

PROFILED = """
services:
  web: {image: busybox}
  db: {image: busybox, profiles: [dev]}
  mock: {image: busybox, profiles: [dev], depends_on: [db]}
  admin: {image: busybox, profiles: [debug], depends_on: [db]}
  tracer:
    image: busybox
    profiles: [debug]
    depends_on: {jaeger: {condition: service_started, required: false}}
  jaeger: {image: busybox, profiles: [tracing]}
"""


@pytest.mark.parametrize(
    ("profiles", "env", "named", "expected"),
    [
        ((), {}, (), ["web"]),
        (("dev",), {}, (), ["db", "mock", "web"]),
        ((), {"COMPOSE_PROFILES": "dev,debug"}, (), ["admin", "db", "mock", "tracer", "web"]),
        (("*",), {}, (), ["admin", "db", "jaeger", "mock", "tracer", "web"]),
        ((), {}, ("mock",), ["db", "mock"]),  # named: its profile, and what it depends on
        ((), {}, ("admin",), ["admin", "db"]),  # db is enabled with admin, which needs it
        (("debug",), {}, ("tracer",), ["tracer"]),  # an optional dependency is left out
    ],
)
def test_profiles(
    tmp_path: Path,
    profiles: tuple[str, ...],
    env: dict[str, str],
    named: tuple[str, ...],
    expected: list[str],
) -> None:
    write(tmp_path, {"compose.yaml": PROFILED})
    project = load(tmp_path, env=env, profiles=profiles, selection=Selection(services=named))
    assert sorted(s.name for s in project.services) == expected
    assert sorted(project.known) == ["admin", "db", "jaeger", "mock", "tracer", "web"]


def test_an_unknown_profile_is_a_warning(tmp_path: Path) -> None:
    write(tmp_path, {"compose.yaml": PROFILED})
    project = load(tmp_path, profiles=("nope",))
    assert project.warnings == ["no service has the profile 'nope'"]


def test_replicas_names_ports_and_scale(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "compose.yaml": "services:\n  web:\n    image: busybox\n"
            "    ports: ['8080-8082:80', '9000']\n    deploy: {replicas: 3}\n",
        },
    )
    web = load(tmp_path).service("web")
    assert [web.vm_name(n) for n in (1, 2, 3)] == ["p-web-1", "p-web-2", "p-web-3"]
    assert [web.ports_of(n) for n in (1, 3)] == [["8080:80", "9000"], ["8082:80", "9000"]]
    assert load(tmp_path, selection=Selection(scale={"web": 2})).service("web").replicas == 2
    with pytest.raises(InvalidArgument, match="has 3 host ports for 4 replicas"):
        load(tmp_path, selection=Selection(scale={"web": 4}))
    with pytest.raises(InvalidArgument, match="no such service: api"):
        load(tmp_path, selection=Selection(scale={"api": 2}))


# --- the corpus ----------------------------------------------------------------------------


def corpus(path: str, **options: Any) -> Project:
    file = CORPUS / path
    return load(file.parent, files=(file.name,), **options)


def test_corpus_merge_fragments() -> None:
    project = corpus("compose-go/golden/merge-fragments.yaml")
    assert sorted(s.name for s in project.services) == ["api", "minimal", "worker"]
    worker = project.service("worker")
    assert worker.image == "example/base:latest" and worker.command == ["worker"]
    assert sorted(worker.env) == ["EXTRA=fallback", "LOG_LEVEL=debug", "REGION=eu-west-1"]
    assert worker.labels["com.example.team"] == "platform" and worker.replicas == 3
    assert project.warnings == []  # x-* extensions are not hypr's to warn about


def test_corpus_extends() -> None:
    reset = corpus("compose-go/extends/reset.yaml").service("base")
    assert reset.image == "alpine:latest" and reset.command is None
    assert corpus("compose-go/extends/withdir/compose.yaml").service("test").image == (
        "hello-world"
    )
    imported = corpus("compose-go/compose-test-extends.yaml")
    importer = imported.service("importer")
    assert importer.image == "nginx" and importer.env == ["SOURCE=extends"]
    assert (importer.mounts[0].source, importer.mounts[0].target) == ("/opt/data", "/var/lib/mysql")
    assert imported.warnings == [
        "services.importer.container_name: not supported by hypr yet, ignored"
    ]


def test_corpus_include() -> None:
    project = corpus("compose-go/compose-include.yaml")
    assert sorted(s.name for s in project.services) == ["bar", "imported"]
    assert project.service("imported").env == ["SOURCE=extends"]
    own_env = corpus("compose-go/include/interpolation/compose-2.yml").service("busybox")
    assert own_env.healthcheck is not None
    assert own_env.healthcheck["test"] == ["CMD-SHELL", "echo test TEST! $SOME_VAR"]
    diamond = corpus("compose-go/include-diamond-left.yaml")
    assert diamond.service("diamond").build is not None


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("compose-go/compose-include-cycle.yaml", "include cycle: compose-include-cycle.yaml"),
        ("compose-go/include/env_file/compose.yaml", "include[0].env_file:"),
        (
            "compose-go/compose-depends-on-profile-no-cycle.yaml",
            "dependency cycle: service1 -> service2 -> service3 -> service1",
        ),
    ],
)
def test_corpus_refused(path: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        corpus(path)


def test_corpus_scaling() -> None:
    project = corpus("conformance-tests/scaling/compose.yaml")
    assert project.service("client").replicas == 3
    with pytest.raises(InvalidArgument, match=r"services\.server\.ports\[0\]: .*fixed host port"):
        corpus("conformance-tests/scaling/compose.yaml", selection=Selection(scale={"server": 2}))


def test_expose_and_the_idle_timeout_extension(tmp_path: Path) -> None:
    write(tmp_path, {"compose.yaml": (
        "services:\n  web:\n    image: busybox\n    expose: [80, '8000-8001', 53/udp]\n"
        "    x-idle-timeout: 5m\n  plain:\n    image: busybox\n"
    )})  # fmt: skip
    project = load(tmp_path)
    web, plain = project.service("web"), project.service("plain")
    assert (web.expose, web.idle_timeout) == (["80", "8000-8001", "53/udp"], 300.0)
    assert (plain.expose, plain.idle_timeout) == ([], None)
    assert web.config_hash != plain.config_hash
    write(tmp_path, {"compose.yaml": (
        "services:\n  web:\n    image: busybox\n    x-idle-timeout: soon\n"
    )})  # fmt: skip
    with pytest.raises(InvalidArgument, match="x-idle-timeout"):
        load(tmp_path)
