"""The compose files a `hypr compose` command reads (only this side has them, `.env` and
the user's environment), merged with their includes and extends into one document, and
what the group's options chose: files, project directory and name, profiles."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from hypr.errors import InvalidArgument

if TYPE_CHECKING:
    from hypr.compose.files import Options
    from hypr.compose.loader import Document
    from hypr.compose.project import HostPaths, Project


class Loaded(NamedTuple):
    """The compose files read and merged here, with what their relative paths mean."""

    name: str
    files: Document
    project_dir: str
    home: str | None  # for `~`: this user's home, not that of hyprd (root)
    profiles: tuple[str, ...]

    @property
    def document(self) -> dict[str, Any]:
        return self.files.document

    def paths(self) -> HostPaths:
        from hypr.compose.project import HostPaths

        return HostPaths(self.project_dir, self.home)

    def selection(self, **chosen: Any) -> dict[str, Any]:
        """The services chosen (the API's fields), with the active profiles."""
        return {"profiles": list(self.profiles), **chosen}

    def project(self, **chosen: Any) -> Project:
        """Validated and normalised here, as hyprd will (for pulls, `config`, binds); a bad
        file is named with the path in it."""
        from hypr.compose.project import load_project
        from hypr.compose.select import Selection

        fields = self.selection(**chosen)
        selection = Selection(
            profiles=tuple(fields["profiles"]),
            services=tuple(fields.get("services", ())),
            scale=fields.get("scale", {}),
            no_deps=fields.get("no_deps", False),
            run=fields.get("run"),
        )
        try:
            return load_project(self.document, self.name, self.paths(), selection)
        except InvalidArgument as exc:
            raise self.files.locate(exc) from None

    def body(self, **chosen: Any) -> dict[str, Any]:
        """The request body of `/stacks/NAME/up`, `/run` and `/config`."""
        return {
            "document": self.document,
            "project_dir": self.project_dir,
            "home": self.home,
            **self.selection(**chosen),
        }


class Target:
    """The files and project chosen by the group's options."""

    options: Options | None = None

    def load(self) -> Loaded:
        # Imported here: compose's models cost more than the rest of the CLI (`--help`).
        from hypr.compose.files import active_profiles, find_sources, project_name
        from hypr.compose.loader import load_document

        assert self.options is not None
        cwd = Path.cwd()
        sources = find_sources(self.options, cwd, os.environ)
        files = load_document(sources, sys.stdin.read, cwd)
        home = os.path.expanduser("~")
        name = project_name(
            self.options.project_name, sources.env, files.document, sources.project_dir
        )
        return Loaded(
            name,
            files,
            str(sources.project_dir),
            home if os.path.isabs(home) else None,
            active_profiles(self.options, sources.env),
        )

    def name(self) -> str:
        """The project name; with -p no file is needed (e.g. `ps -p NAME`)."""
        assert self.options is not None
        if self.options.project_name:
            from hypr.compose.files import project_name

            return project_name(self.options.project_name, {}, {}, Path.cwd())
        return self.load().name


target = Target()
