"""One stage's state while it builds, and the instructions that only change its config
(ENV, LABEL, WORKDIR, USER, EXPOSE, VOLUME, STOPSIGNAL, SHELL, HEALTHCHECK, ENTRYPOINT,
CMD, ARG, MAINTAINER, ONBUILD), applied as Docker's reference says."""

from __future__ import annotations

import copy
import json
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypr.build import shell
from hypr.build.arguments import (
    arg_definitions,
    command_form,
    healthcheck,
    key_values,
)
from hypr.build.instruction import (
    DockerfileError,
    Instruction,
)

DEFAULT_SHELL = ["/bin/sh", "-c"]
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PORT = re.compile(r"^\d+(-\d+)?(/(tcp|udp|sctp))?$")


@dataclass
class StageState:
    """What a stage has made so far: its layers, its image config, its history, the key
    of its last step, and the ARGs it declared."""

    file: str
    index: int  # the stage's place in the Dockerfile: COPY --from sees only earlier ones
    layers: list[tuple[str, Path]] = field(default_factory=list)  # (diff_id, squashfs)
    config: dict[str, Any] = field(default_factory=dict)  # the OCI config's `config`
    history: list[dict[str, Any]] = field(default_factory=list)
    key: str = ""
    args: dict[str, str] = field(default_factory=dict)
    cmd_from_base: bool = False  # ENTRYPOINT then resets CMD (Docker's rule)
    author: str = ""

    def fork(self, index: int) -> StageState:
        """A later stage `FROM` this one starts from a copy of where it ended."""
        state = copy.deepcopy(self)
        state.index = index
        state.args = {}
        state.cmd_from_base = bool(self.config.get("Cmd"))
        return state

    # --- the variables in force ----------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        pairs = (item.partition("=") for item in self.config.get("Env") or [])
        return {key: value for key, _, value in pairs}

    def lookup(self, name: str) -> str | None:
        """ENV wins over ARG, as Docker's reference says."""
        env = self.env
        return env[name] if name in env else self.args.get(name)

    def expand(self, inst: Instruction, word: str) -> str:
        try:
            return shell.expand(word, self.lookup, inst.escape)
        except ValueError as exc:
            raise DockerfileError(self.file, inst.line, inst.keyword, str(exc)) from None

    def words(self, inst: Instruction, text: str) -> list[str]:
        try:
            return shell.words(text, self.lookup, inst.escape)
        except ValueError as exc:
            raise DockerfileError(self.file, inst.line, inst.keyword, str(exc)) from None

    def run_env(self) -> list[str]:
        """A RUN step's environment: the ARGs (unless an ENV has the name), then ENV."""
        env = self.env
        merged = {k: v for k, v in self.args.items() if k not in env} | env
        if "PATH" not in merged:
            merged["PATH"] = DEFAULT_PATH.partition("=")[2]
        return [f"{k}={v}" for k, v in merged.items()]

    @property
    def shell(self) -> list[str]:
        return list(self.config.get("Shell") or DEFAULT_SHELL)

    @property
    def workdir(self) -> str:
        return str(self.config.get("WorkingDir") or "/")

    @property
    def user(self) -> str | None:
        return self.config.get("User") or None


@dataclass(frozen=True)
class ArgScope:
    """Where an ARG takes its value: the build's --build-arg, else its default, else the
    global ARG of that name."""

    build_args: Mapping[str, str]
    globals: Mapping[str, str]


Handler = Callable[[StageState, Instruction, ArgScope], str]


def apply_config(state: StageState, inst: Instruction, scope: ArgScope) -> str:
    """Apply a config-only instruction; returns its canonical text for the cache key and
    the history (`ENV A=b`, substituted)."""
    handler = _HANDLERS.get(inst.keyword)
    if handler is None:
        raise DockerfileError(state.file, inst.line, inst.keyword, "is not supported")
    return handler(state, inst, scope)


def _pairs(state: StageState, inst: Instruction, into: dict[str, str]) -> str:
    added = []
    for key, value in key_values(inst):
        k, v = state.expand(inst, key), state.expand(inst, value)
        into[k] = v
        added.append(f"{k}={v}")
    return f"{inst.keyword} " + " ".join(added)


def _env(state: StageState, inst: Instruction, _: ArgScope) -> str:
    env = state.env
    text = _pairs(state, inst, env)
    state.config["Env"] = [f"{k}={v}" for k, v in env.items()]
    return text


def _label(state: StageState, inst: Instruction, _: ArgScope) -> str:
    labels = dict(state.config.get("Labels") or {})
    text = _pairs(state, inst, labels)
    state.config["Labels"] = labels
    return text


def _arg(state: StageState, inst: Instruction, scope: ArgScope) -> str:
    shown = []
    for name, default in arg_definitions(inst):
        given = scope.build_args.get(name)
        if given is None and default is not None:
            given = state.expand(inst, default)
        if given is None:
            given = scope.globals.get(name)
        state.args[name] = given or ""
        shown.append(name if given is None else f"{name}={given}")
    return "ARG " + " ".join(shown)


def _workdir(state: StageState, inst: Instruction, _: ArgScope) -> str:
    path = state.expand(inst, inst.text.strip())
    state.config["WorkingDir"] = posixpath.normpath(posixpath.join(state.workdir, path))
    return f"WORKDIR {state.config['WorkingDir']}"


def _simple(key: str) -> Handler:
    """USER, STOPSIGNAL: one substituted word into one config field."""

    def handler(state: StageState, inst: Instruction, _: ArgScope) -> str:
        state.config[key] = state.expand(inst, inst.text.strip())
        return f"{inst.keyword} {state.config[key]}"

    return handler


def _expose(state: StageState, inst: Instruction, _: ArgScope) -> str:
    ports = dict(state.config.get("ExposedPorts") or {})
    for word in state.words(inst, inst.text):
        if not _PORT.match(word):
            raise DockerfileError(state.file, inst.line, inst.keyword, f"invalid port {word!r}")
        ports[word if "/" in word else f"{word}/tcp"] = {}
    state.config["ExposedPorts"] = ports
    return "EXPOSE " + " ".join(ports)


def _volume(state: StageState, inst: Instruction, _: ArgScope) -> str:
    if inst.args is not None:
        targets = [state.expand(inst, target) for target in inst.args]
    else:
        targets = state.words(inst, inst.text)
    volumes = dict(state.config.get("Volumes") or {})
    volumes.update((target, {}) for target in targets)
    state.config["Volumes"] = volumes
    return "VOLUME " + json.dumps(sorted(volumes))


def _shell(state: StageState, inst: Instruction, _: ArgScope) -> str:
    if not inst.args:
        raise DockerfileError(state.file, inst.line, inst.keyword, "SHELL takes a JSON array")
    state.config["Shell"] = list(inst.args)
    return f"SHELL {json.dumps(inst.args)}"


def _healthcheck(state: StageState, inst: Instruction, _: ArgScope) -> str:
    state.config["Healthcheck"] = healthcheck(inst).config()
    return f"HEALTHCHECK {json.dumps(state.config['Healthcheck'])}"


def _entrypoint(state: StageState, inst: Instruction, _: ArgScope) -> str:
    """ENTRYPOINT resets a CMD that came from the base image (Docker's rule)."""
    argv = command_form(inst, state.shell).argv
    state.config["Entrypoint"] = argv or None
    if state.cmd_from_base:
        state.config["Cmd"] = None
    return f"ENTRYPOINT {json.dumps(argv)}"


def _cmd(state: StageState, inst: Instruction, _: ArgScope) -> str:
    argv = command_form(inst, state.shell).argv
    state.config["Cmd"] = argv or None
    state.cmd_from_base = False
    return f"CMD {json.dumps(argv)}"


def _maintainer(state: StageState, inst: Instruction, _: ArgScope) -> str:
    state.author = inst.text.strip()
    return f"MAINTAINER {state.author}"


def _onbuild(state: StageState, inst: Instruction, _: ArgScope) -> str:
    """Recorded in the image for builds FROM it; hypr does not run such triggers."""
    state.config["OnBuild"] = [*(state.config.get("OnBuild") or []), inst.text.strip()]
    return f"ONBUILD {inst.text.strip()}"


_HANDLERS: dict[str, Handler] = {
    "ENV": _env, "LABEL": _label, "ARG": _arg, "WORKDIR": _workdir, "USER": _simple("User"),
    "STOPSIGNAL": _simple("StopSignal"), "EXPOSE": _expose, "VOLUME": _volume,
    "SHELL": _shell, "HEALTHCHECK": _healthcheck, "ENTRYPOINT": _entrypoint, "CMD": _cmd,
    "MAINTAINER": _maintainer, "ONBUILD": _onbuild,
}  # fmt: skip
