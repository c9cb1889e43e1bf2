"""Images a VM can run: the built-in ones made at set-up (assets dir, `manifest.json` +
`rootfs.squashfs`, no registry needed) and the pulled ones (rows in SQLite, one squashfs
per layer under `$HYPR_DATA_DIR/images/layers/`, stacked bottom first in the guest).

Names resolve as Docker's do: `busybox` is `docker.io/library/busybox:latest`; an image id
or an unambiguous prefix of one works too. An absolute path names a root filesystem file
(ext4 or squashfs) under the directories the host allows: an image of one layer, no config.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hypr.errors import HyprError, InvalidArgument, NotFound
from hypr.images.bootfiles import BootKind, boot_file
from hypr.images.config import ImageConfig
from hypr.images.layers import clean_partials, layer_path
from hypr.images.oci import host_platform
from hypr.images.reference import Reference, parse_reference
from hypr.state.db import Database
from hypr.state.images import ImageRepository, ImageRow

_ID_PREFIX = re.compile(r"^(?:sha256:)?([0-9a-f]{1,64})$")
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Image:
    id: str  # sha256:<hex> of the image config
    repo_tags: list[str]  # familiar: nginx:latest, 127.0.0.1:5000/x:1
    repo_digests: list[str]  # familiar: nginx@sha256:...
    layers: tuple[Path, ...]  # squashfs files, bottom first
    config: ImageConfig
    size: int
    created: str
    builtin: bool = False

    @property
    def reference(self) -> str:
        """The name a VM records: its first tag, else its id."""
        return self.repo_tags[0] if self.repo_tags else self.id

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]


class ImageStore:
    """Finds images by reference or id; the puller adds to it through `rows`."""

    def __init__(
        self,
        root: Path,
        db: Database,
        builtin_roots: Sequence[Path] = (),
        file_roots: Sequence[Path] = (),
    ) -> None:
        self.builtin_roots = tuple(builtin_roots)
        self.file_roots = tuple(file_roots)
        self.root = root
        self.layers_dir = root / "layers"
        self.layers_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.rows = ImageRepository(db)

    def layer_file(self, diff_id: str) -> Path:
        return layer_path(self.layers_dir, diff_id)

    def clean_partials(self) -> None:
        clean_partials(self.layers_dir)

    def remove(self, image_id: str) -> list[str]:
        """Delete a pulled image's rows, then the files of the layers no other image uses
        (rows first: a crash in between leaves unused files, never a row without its file).
        Returns those layers' diff_ids. Whether a VM still uses the image is the caller's
        question."""
        orphans = self.rows.delete(image_id)
        for diff_id in orphans:
            self.layer_file(diff_id).unlink(missing_ok=True)
        return orphans

    def all(self) -> list[Image]:
        return [*self._builtins(), *(self._image(row) for row in self.rows.all())]

    def get(self, text: str) -> Image:
        """The image `text` names (a reference, an id, an id prefix or a root filesystem
        file's path), else NotFound."""
        if text.startswith("/"):
            return self.file_image(text)
        ref = _parse(text)
        if ref is not None:
            canonical = str(ref)
            for image in self._builtins():
                if canonical in (str(parse_reference(t)) for t in image.repo_tags):
                    return image
            row = self.rows.by_name(canonical)
            if row is not None:
                return self._image(row)
        match = _ID_PREFIX.match(text)
        if match:
            prefix = match.group(1)
            found = [i for i in self._builtins() if i.id.removeprefix("sha256:").startswith(prefix)]
            found += [self._image(row) for row in self.rows.by_id_prefix(prefix)]
            if len(found) > 1:
                raise InvalidArgument(f"image id prefix {text} is ambiguous: give more of it")
            if found:
                return found[0]
        if ref is None:
            raise InvalidArgument(f"invalid reference format: {text!r}")
        raise NotFound(f"image {text} not found (pull it first: hypr pull {ref.familiar})")

    def boot_file(self, text: str, kind: BootKind, field: str) -> Path:
        """A kernel or root filesystem file a VM may boot (see bootfiles.py)."""
        return boot_file(text, self.file_roots, kind, field)

    def file_image(self, text: str, field: str = "image") -> Image:
        """A root filesystem file as an image: its one layer, PATH as the only config."""
        path = self.boot_file(text, "rootfs", field)
        return Image(
            id="sha256:" + hashlib.sha256(str(path).encode()).hexdigest(),
            repo_tags=[str(path)],
            repo_digests=[],
            layers=(path,),
            config=ImageConfig(
                env=[DEFAULT_PATH], architecture=host_platform().architecture, os="linux"
            ),
            size=path.stat().st_size,
            created="",
            builtin=True,
        )

    def _image(self, row: ImageRow) -> Image:
        return Image(
            id=row.id,
            repo_tags=[parse_reference(t).familiar for t in row.tags],
            repo_digests=[parse_reference(d).familiar for d in row.digests],
            layers=tuple(self.layer_file(d) for d in row.diff_ids),
            config=ImageConfig.from_oci(row.config),
            size=row.size,
            created=row.created,
        )

    def _builtins(self) -> list[Image]:
        return [
            _builtin(manifest)
            for root in self.builtin_roots
            for manifest in sorted(root.glob("*/manifest.json"))
        ]


def _parse(text: str) -> Reference | None:
    try:
        return parse_reference(text)
    except HyprError:
        return None


def _builtin(manifest: Path) -> Image:
    """A built-in image: one layer, its config from the set-up's manifest.json."""
    raw = manifest.read_bytes()
    data = json.loads(raw)
    rootfs = manifest.parent / "rootfs.squashfs"
    config = ImageConfig(
        entrypoint=list(data.get("entrypoint", [])),
        cmd=list(data.get("cmd", [])),
        env=list(data.get("env", [])),
        workdir=data.get("workdir", "/") or "/",
        exposed_ports=list(data.get("exposed_ports", [])),
        architecture=host_platform().architecture,
        os="linux",
    )
    return Image(
        id="sha256:" + hashlib.sha256(raw).hexdigest(),
        repo_tags=[f"{data['name']}:{data.get('tag', 'latest')}"],
        repo_digests=[],
        layers=(rootfs,),
        config=config,
        size=rootfs.stat().st_size,
        created=str(data.get("created", "")),
        builtin=True,
    )
