"""`hypr pull`, `images`, `rmi`, `tag` and `hypr image inspect|ls|rm|prune|history`.

`rich` (the progress bars) is imported only by a pull on a terminal: the other commands
start as fast as `hypr ps`.
"""

from __future__ import annotations

import sys
import time
from typing import Any
from urllib.parse import quote

import click

from hypr import units
from hypr.cli import pulling
from hypr.cli.client import ClientError
from hypr.cli.context import api
from hypr.cli.output import confirm_prune, inspect_each, print_pruned, print_table


@click.command()
@click.option("--quiet", "-q", is_flag=True, help="Print only the image's reference")
@click.argument("reference")
def pull(reference: str, quiet: bool) -> None:
    """Pull an image from a registry."""
    result = pulling.show_pull(reference, sys.stdout, quiet=quiet)
    click.echo(result["aux"]["Reference"])


@click.command()
@click.option("--quiet", "-q", is_flag=True, help="Only image IDs")
@click.option("--digests", is_flag=True, help="Show digests")
def images(quiet: bool, digests: bool) -> None:
    """List images."""
    rows = [row for image in api().get("/images") for row in _rows(image)]
    if quiet:
        for row in rows:
            click.echo(row[3])
        return
    now = time.time()
    print_table(
        ["REPOSITORY", "TAG", *(["DIGEST"] if digests else []), "IMAGE ID", "CREATED", "SIZE"],
        [
            [
                repo,
                tag,
                *([digest] if digests else []),
                short,
                f"{units.human_duration(now - created)} ago" if created else "N/A",
                units.human_size(size),
            ]
            for repo, tag, digest, short, created, size in rows
        ],
    )


def _rows(image: dict[str, Any]) -> list[tuple[str, str, str, str, int, int]]:
    """A row per tag (`<none>` for an untagged image), each with its repository's digest."""
    digests = dict(d.rsplit("@", 1) for d in image["RepoDigests"])
    short = image["Id"].removeprefix("sha256:")[:12]
    names = [_split_tag(t) for t in image["RepoTags"]]
    if not names:
        names = [(repo, "<none>") for repo in digests] or [("<none>", "<none>")]
    return [
        (repo, tag, digests.get(repo, "<none>"), short, image["Created"], image["Size"])
        for repo, tag in names
    ]


def _split_tag(name: str) -> tuple[str, str]:
    repo, sep, tag = name.rpartition(":")
    return (repo, tag) if sep and "/" not in tag else (name, "")


@click.command("inspect")
@click.argument("references", nargs=-1, required=True)
def inspect(references: tuple[str, ...]) -> None:
    """Show images as JSON (Docker's shape)."""
    inspect_each(references, lambda ref: api().get(f"/images/{quote(ref, safe='')}/json"))


@click.command()
@click.option("--force", "-f", is_flag=True, help="Remove only the name of an image in use")
@click.argument("references", nargs=-1, required=True)
def rmi(references: tuple[str, ...], force: bool) -> None:
    """Remove images."""
    failed = False
    for ref in references:
        try:
            done = api().delete(f"/images/{quote(ref, safe='')}", params={"force": force})
        except ClientError as exc:
            click.echo(f"Error: {exc}", err=True)
            failed = True
            continue
        for item in done:
            for what, name in item.items():
                click.echo(f"{what}: {name}")
    if failed:
        raise click.exceptions.Exit(1)


@click.command()
@click.argument("source")
@click.argument("target")
def tag(source: str, target: str) -> None:
    """Give an image another name: TARGET is REPOSITORY[:TAG]."""
    repo, tag = _split_tag(target)
    api().post(f"/images/{quote(source, safe='')}/tag", json={"repo": repo, "tag": tag or None})


@click.command()
@click.option("--all", "-a", "all_", is_flag=True, help="Every image no VM uses")
@click.option("--force", "-f", is_flag=True, help="Do not ask")
def prune(all_: bool, force: bool) -> None:
    """Remove unused images (dangling ones only, without -a)."""
    which = "all images without at least one VM" if all_ else "all dangling images"
    if not force and not confirm_prune(f"WARNING! This will remove {which}."):
        return
    result = api().post("/images/prune", params={"all": all_})
    deleted = [
        f"{what.lower()}: {name}" for item in result["ImagesDeleted"] for what, name in item.items()
    ]
    print_pruned("Images", deleted, result["SpaceReclaimed"])


@click.command()
@click.option("--no-trunc", is_flag=True, help="Do not truncate the output")
@click.option("--quiet", "-q", is_flag=True, help="Only image IDs")
@click.argument("reference")
def history(reference: str, no_trunc: bool, quiet: bool) -> None:
    """Show an image's history: the step that made each layer, newest first."""
    entries = api().get(f"/images/{quote(reference, safe='')}/history")
    if quiet:
        for entry in entries:
            click.echo(entry["Id"] if no_trunc else _short(entry["Id"]))
        return
    now = time.time()
    rows = []
    for entry in entries:
        created_by = entry["CreatedBy"]
        if not no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        created = entry["Created"]
        rows.append([
            entry["Id"] if no_trunc else _short(entry["Id"]),
            f"{units.human_duration(now - created)} ago" if created else "N/A",
            created_by, units.human_size(entry["Size"]), entry["Comment"],
        ])  # fmt: skip
    print_table(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], rows)


def _short(image_id: str) -> str:
    return image_id if image_id == "<missing>" else image_id.removeprefix("sha256:")[:12]


@click.group()
def image() -> None:
    """Manage images."""


image.add_command(inspect)
image.add_command(images, "ls")
image.add_command(rmi, "rm")
image.add_command(prune)
image.add_command(pull)
image.add_command(tag)
image.add_command(history)
