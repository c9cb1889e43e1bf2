"""The Builder: a parsed Dockerfile, its context and options in; an image config and its
layers out. Stages build in dependency order (graphlib), only those the target needs;
each step is looked up in the cache first; RUN runs in a build VM, COPY and ADD are
made on the host. Progress is BuildKit-like text (`#3 [build 2/4] RUN make`, the step's
output, `#3 DONE 1.2s` or `#3 CACHED`).
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

from hypr.build.access import Emit, ImageAccess
from hypr.build.arguments import (
    arg_definitions,
)
from hypr.build.cache import BuildCache, CachedStep, chain
from hypr.build.instruction import (
    Dockerfile,
    DockerfileError,
    Instruction,
    Stage,
)
from hypr.build.stage import ArgScope, StageState, apply_config
from hypr.build.steps import StepRunner
from hypr.build.vm import BuildMachine, BuildNetwork
from hypr.errors import HyprError, InvalidArgument

COMMENT = "buildkit.dockerfile.v0"  # what BuildKit writes in each history entry


@dataclass(frozen=True)
class BuildOptions:
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    pull: bool = False
    network: BuildNetwork = "none"
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildResult:
    config: bytes  # the image config, canonical JSON; its sha256 is the image id
    layers: list[tuple[str, Path, int]]  # (diff_id, squashfs, tar size)
    created: str


class Builder:
    def __init__(
        self,
        dockerfile: Dockerfile,
        context: Path,
        options: BuildOptions,
        images: ImageAccess,
        cache: BuildCache,
        machine: BuildMachine,
        emit: Emit,
    ) -> None:
        self.df = dockerfile
        self.context = context
        self.options = options
        self.images = images
        self.cache = cache
        self.emit = emit
        self.steps = StepRunner(context, images, machine, emit)
        self.globals = self._global_args()
        self.done: dict[int, StageState] = {}
        self.number = 0
        self.layer_sizes: dict[str, int] = {}
        self.used_args: set[str] = set()

    async def build(self) -> BuildResult:
        target = self._target()
        order = self._order(target)
        try:
            for index in order:
                self.done[index] = await self._stage(self.df.stages[index])
        finally:
            await self.steps.close()
        unused = sorted(set(self.options.build_args) - self.used_args - set(self.globals))
        if unused:
            self.emit(f"[Warning] One or more build-args {unused} were not consumed\n")
        return self._result(self.done[target.index])

    # --- stages --------------------------------------------------------------------------

    def _global_args(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for inst in self.df.global_args:
            state = StageState(self.df.file, -1, args=dict(values))
            apply_config(state, inst, ArgScope(self.options.build_args, {}))
            values.update(state.args)
        return values

    def _target(self) -> Stage:
        if self.options.target is None:
            return self.df.stages[-1]
        for stage in self.df.stages:
            if stage.name == self.options.target.lower():
                return stage
        raise InvalidArgument(f"target stage {self.options.target!r} could not be found")

    def _stage_ref(self, name: str, before: int) -> Stage | None:
        """The earlier stage `name` (a name or an index) refers to, if any."""
        for stage in self.df.stages[:before]:
            if stage.name == name.lower() or str(stage.index) == name:
                return stage
        return None

    def _order(self, target: Stage) -> list[int]:
        """The stages `target` needs, dependencies first."""
        graph: dict[int, set[int]] = {}
        todo = [target]
        while todo:
            stage = todo.pop()
            if stage.index in graph:
                continue
            deps = set()
            base = self._stage_ref(stage.base, stage.index)
            if base is not None:
                deps.add(base.index)
            for inst in stage.instructions:
                source = inst.flag("from")
                if inst.keyword in ("COPY", "ADD") and source is not None:
                    ref = self._stage_ref(source, stage.index)
                    if ref is not None:
                        deps.add(ref.index)
            graph[stage.index] = deps
            todo += [self.df.stages[d] for d in deps]
        return list(TopologicalSorter(graph).static_order())

    def _label(self, stage: Stage) -> str:
        return stage.name or f"stage-{stage.index}"

    async def _stage(self, stage: Stage) -> StageState:
        total = len(stage.instructions) + 1
        label = self._label(stage)
        number = self._start(f"[{label} 1/{total}] FROM {stage.base}")
        began = time.monotonic()
        state = await self._from(stage)
        self.emit(f"#{number} DONE {time.monotonic() - began:.1f}s\n")
        for position, inst in enumerate(stage.instructions, start=2):
            await self._step(state, inst, f"[{label} {position}/{total}] {inst.source}")
        return state

    async def _from(self, stage: Stage) -> StageState:
        ref = self._stage_ref(stage.base, stage.index)
        if ref is not None:
            return self.done[ref.index].fork(stage.index)
        state = StageState(self.df.file, stage.index)
        if stage.base == "scratch":
            state.key = chain("scratch")
            return state
        try:
            base = await self.images.base(stage.base, self.options.pull, self.emit)
        except HyprError as exc:
            raise DockerfileError(self.df.file, stage.line, "FROM", exc.message) from None
        state.layers = list(base.layers)
        state.config = dict(base.config.get("config") or {})
        state.history = list(base.config.get("history") or [])
        state.cmd_from_base = bool(state.config.get("Cmd"))
        state.key = chain("image", base.id)
        return state

    # --- steps ---------------------------------------------------------------------------

    def _start(self, title: str) -> int:
        self.number += 1
        self.emit(f"#{self.number} {title}\n")
        return self.number

    async def _step(self, state: StageState, inst: Instruction, title: str) -> None:
        number = self._start(title)
        began = time.monotonic()
        if inst.keyword == "ARG":
            self.used_args.update(name for name, _ in arg_definitions(inst))
        if inst.keyword in ("RUN", "COPY", "ADD"):
            cached = await self._layer_step(state, inst, number)
        else:
            cached = self._config_step(state, inst)
        elapsed = time.monotonic() - began
        self.emit(f"#{number} CACHED\n" if cached else f"#{number} DONE {elapsed:.1f}s\n")

    def _config_step(self, state: StageState, inst: Instruction) -> bool:
        """ENV, LABEL, ...: no layer; cached when the chain up to here is."""
        text = apply_config(state, inst, ArgScope(self.options.build_args, self.globals))
        key = chain(state.key, text)
        cached = None if self.options.no_cache else self.cache.get(key)
        created = cached.created if cached else _now()
        if cached is None:
            self.cache.put(key, CachedStep(created))
        state.key = key
        state.history.append({"created": created, "created_by": text,
                              "comment": COMMENT, "empty_layer": True})  # fmt: skip
        return cached is not None

    async def _layer_step(self, state: StageState, inst: Instruction, number: int) -> bool:
        """RUN, COPY, ADD: a layer, from the cache when the key matches and its file is
        still in the store."""
        with tempfile.TemporaryDirectory(prefix="step-", dir=self.context.parent) as tmp:
            work = Path(tmp)
            prepared = await self.steps.prepare(state, inst, work, self._from_stage)
            key = chain(state.key, prepared.key)
            cached = None if self.options.no_cache else self.cache.get(key)
            layer = self.images.layer(cached.diff_id) if cached and cached.diff_id else None
            if cached is not None and cached.diff_id is not None and layer is not None:
                self._add_layer(state, (cached.diff_id, layer, cached.tar_size),
                                cached.created, prepared.created_by, key)  # fmt: skip
                return True
            tar = work / "layer.tar"
            diff_id = await self.steps.execute(prepared, state, tar, number, self.options.network)
            size = tar.stat().st_size
            path = await self.images.add_layer(tar, diff_id)
        created = _now()
        self.cache.put(key, CachedStep(created, diff_id, size))
        self._add_layer(state, (diff_id, path, size), created, prepared.created_by, key)
        return False

    def _from_stage(self, name: str, before: int) -> StageState | None:
        """`COPY --from=NAME`: the finished state of an earlier stage, None for an image."""
        stage = self._stage_ref(name, before)
        return self.done[stage.index] if stage is not None else None

    def _add_layer(
        self, state: StageState, layer: tuple[str, Path, int], created: str, by: str, key: str
    ) -> None:
        diff_id, path, size = layer
        state.layers.append((diff_id, path))
        state.history.append({"created": created, "created_by": by, "comment": COMMENT})
        state.key = key
        self.layer_sizes[diff_id] = size

    # --- the image -----------------------------------------------------------------------

    def _result(self, state: StageState) -> BuildResult:
        config = dict(state.config)
        if self.options.labels:
            config["Labels"] = {**(config.get("Labels") or {}), **self.options.labels}
        config = {k: v for k, v in config.items() if v not in (None, [], {})}
        created = max((h.get("created", "") for h in state.history), default="") or _now()
        image: dict[str, Any] = {
            "architecture": "amd64",
            "os": "linux",
            "created": created,
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [d for d, _ in state.layers]},
            "history": state.history,
        }
        if state.author:
            image["author"] = state.author
        raw = json.dumps(image, sort_keys=True, separators=(",", ":")).encode()
        layers = [(d, p, self.layer_sizes.get(d, p.stat().st_size)) for d, p in state.layers]
        return BuildResult(raw, layers, created)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
