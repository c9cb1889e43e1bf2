"""The steps that make layers. `prepare` works out everything the cache key needs (the
command and its environment for RUN; the files, owners and modes for COPY and ADD) without
changing anything; `execute` makes the layer tar."""

from __future__ import annotations

import collections
import json
import posixpath
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

from hypr.build import layer
from hypr.build.access import Emit, ImageAccess
from hypr.build.arguments import (
    command_form,
    copy_sources,
    heredoc_content,
)
from hypr.build.copy import CopyOptions, parse_chmod, parse_chown, plan
from hypr.build.instruction import (
    DockerfileError,
    Instruction,
)
from hypr.build.rootview import RootView
from hypr.build.stage import StageState
from hypr.build.vm import BuildMachine, BuildNetwork, BuildVm, StepFailed
from hypr.errors import HyprError, InvalidArgument

NETWORKS = ("none", "default")
TAIL_LINES = 10


class FromStage(Protocol):
    def __call__(self, name: str, before: int) -> StageState | None: ...


@dataclass
class Prepared:
    inst: Instruction
    key: str  # the step's part of the cache key
    created_by: str
    argv: list[str] = field(default_factory=list)  # RUN
    files: dict[str, bytes] = field(default_factory=dict)  # a heredoc script to run
    env: list[str] = field(default_factory=list)
    network: BuildNetwork | None = None
    entries: list[layer.Entry] = field(default_factory=list)  # COPY, ADD


class StepRunner:
    def __init__(
        self, context: Path, images: ImageAccess, machine: BuildMachine, emit: Emit
    ) -> None:
        self.context = context
        self.images = images
        self.machine = machine
        self.emit = emit
        self._vm: BuildVm | None = None

    async def prepare(
        self, state: StageState, inst: Instruction, work: Path, from_stage: FromStage
    ) -> Prepared:
        if inst.keyword == "RUN":
            return self._prepare_run(state, inst)
        return await self._prepare_copy(state, inst, work, from_stage)

    async def execute(
        self, step: Prepared, state: StageState, tar: Path, number: int, default: BuildNetwork
    ) -> str:
        if step.inst.keyword != "RUN":
            return layer.write_entries(step.entries, tar)
        if not state.layers:
            raise DockerfileError(state.file, step.inst.line, "RUN",
                                  "a stage FROM scratch has nothing to run yet")  # fmt: skip
        network = step.network or default
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        began = time.monotonic()
        pending = b""

        def output(data: bytes) -> None:
            nonlocal pending
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                text = line.decode(errors="replace").rstrip("\r")
                tail.append(text)
                self.emit(f"#{number} {time.monotonic() - began:.3f} {text}\n")

        vm = await self._vm_for(state, network)
        try:
            try:
                for path, data in step.files.items():
                    await vm.put_file(path, data)
                await vm.run(step.argv, step.env, state.workdir, state.user, output)
            finally:
                if pending:
                    output(b"\n")
            diff_id = await vm.capture(tar)
            await vm.restack(diff_id)
            return diff_id
        except BaseException as error:
            await self.close()
            if not isinstance(error, StepFailed):
                raise
            exc = error
            shown = "\n".join(tail)
            raise BuildFailed(
                f"{state.file}:{step.inst.line}: {step.inst.source!r} did not complete "
                f"successfully: exit code {exc.code}" + (f"\n{shown}" if shown else "")
            ) from None

    async def _vm_for(self, state: StageState, network: BuildNetwork) -> BuildVm:
        """The build VM whose root is the stage as it is now: the one the stage's last
        RUN left (its steps' uppers stacked as lower layers in the guest), else a new one
        (a COPY came between, or the network differs)."""
        diff_ids = [d for d, _ in state.layers]
        vm = self._vm
        if vm is not None and vm.diff_ids == diff_ids and vm.network == network:
            return vm
        await self.close()
        vm = BuildVm(self.machine, [p for _, p in state.layers], network, diff_ids)
        await vm.__aenter__()
        self._vm = vm
        return vm

    async def close(self) -> None:
        """Stop the build VM kept for the next RUN, if any."""
        vm, self._vm = self._vm, None
        if vm is not None:
            await vm.__aexit__(None, None, None)

    # --- RUN -----------------------------------------------------------------------------

    def _prepare_run(self, state: StageState, inst: Instruction) -> Prepared:
        network = inst.flag("network")
        if network is not None and network not in NETWORKS:
            raise DockerfileError(state.file, inst.line, "RUN",
                                  f"--network={network}: use none or default")  # fmt: skip
        if inst.flags.get("mount"):
            self.emit(f"[Warning] {state.file}:{inst.line}: RUN --mount is not supported "
                      "by hypr yet: the step runs without it\n")  # fmt: skip
        argv, files = command_form(inst, state.shell)
        env = state.run_env()
        scripts = {path: data.decode(errors="replace") for path, data in files.items()}
        key = json.dumps(["RUN", argv, env, network, scripts])
        return Prepared(inst, key, f"RUN {' '.join(argv)} # buildkit", argv, files, env,
                        network)  # type: ignore[arg-type]  # fmt: skip

    # --- COPY, ADD -----------------------------------------------------------------------

    async def _prepare_copy(
        self, state: StageState, inst: Instruction, work: Path, from_stage: FromStage
    ) -> Prepared:
        kw = inst.keyword
        view = RootView([p for _, p in state.layers])
        sources, dest = copy_sources(inst, state.lookup)
        chown = inst.flag("chown")
        chmod = inst.flag("chmod")
        options = CopyOptions(
            owner=parse_chown(state.expand(inst, chown), view) if chown else None,
            chmod=parse_chmod(state.expand(inst, chmod)) if chmod else None,
            unpack=kw == "ADD",
        )
        root = self.context
        if inst.heredocs:
            root = work / "heredocs"
            root.mkdir()
            for doc in inst.heredocs:
                path = root / doc.name
                path.write_text(heredoc_content(inst, doc, state.lookup))
                path.chmod(0o644)  # as BuildKit makes heredoc files
            sources = [doc.name for doc in inst.heredocs]
        source = inst.flag("from")
        if source is not None:
            if kw == "ADD":
                raise DockerfileError(state.file, inst.line, kw, "ADD does not take --from")
            root = await self._from_root(state, inst, state.expand(inst, source), sources,
                                         work, from_stage)  # fmt: skip
            options = CopyOptions(options.owner, options.chmod, keep_owner=True,
                                  inside_context=False)  # fmt: skip
        elif kw == "ADD" and any(_is_url(s) for s in sources):
            root, sources = await self._download(sources, work)
        try:
            entries = plan(sources, dest, root, view, state.workdir, options, kw)
        except InvalidArgument as exc:
            raise DockerfileError(state.file, inst.line, kw, exc.message) from None
        flags = {k: [state.expand(inst, v) for v in vs] for k, vs in sorted(inst.flags.items())}
        key = json.dumps([kw, flags, dest, state.workdir, layer.checksum(entries)])
        return Prepared(inst, key, f"{inst.source} # buildkit", entries=entries)

    async def _from_root(
        self, state: StageState, inst: Instruction, name: str, sources: list[str], work: Path,
        from_stage: FromStage,
    ) -> Path:  # fmt: skip
        """The files COPY --from names, taken out of the stage or image into `work`."""
        other = from_stage(name, state.index)
        if other is not None:
            layers = [p for _, p in other.layers]
        else:
            try:
                image = await self.images.base(name, False, self.emit)
            except HyprError as exc:
                raise DockerfileError(state.file, inst.line, inst.keyword,
                                      f"--from={name}: {exc.message}") from None  # fmt: skip
            layers = [p for _, p in image.layers]
        view = RootView(layers)
        roots = []
        for source in sources:
            if any(c in source for c in "*?["):
                roots.append(view.resolve(posixpath.dirname("/" + source) or "/"))
            else:
                roots.append(view.resolve("/" + source))
        root = work / "from"
        root.mkdir()
        view.extract(roots, root)
        return root

    async def _download(self, sources: list[str], work: Path) -> tuple[Path, list[str]]:
        """ADD of URLs: each fetched (through the build proxy when there is one) into a
        file named after the URL's last part, mode 0600 as Docker makes it."""
        root = work / "urls"
        root.mkdir()
        names = []
        proxy = self.machine.proxy_url
        async with httpx.AsyncClient(proxy=proxy, follow_redirects=True, timeout=60) as client:
            for source in sources:
                if not _is_url(source):
                    raise InvalidArgument(f"ADD: {source}: URLs and local files cannot mix")
                name = posixpath.basename(httpx.URL(source).path) or "index.html"
                try:
                    response = await client.get(source)
                    response.raise_for_status()
                except httpx.HTTPError as exc:
                    raise InvalidArgument(f"ADD {source}: {exc}") from None
                path = root / name
                path.write_bytes(response.content)
                path.chmod(0o600)
                names.append(name)
        return root, names


class BuildFailed(HyprError):
    """A RUN step failed: its line, its exit code and its last lines of output."""


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))
