"""Runs the registry client inside a test's namespace and prints what it got as JSON.

The test process lives in the root namespace and must not talk to the namespace's registry
itself, so tests run this with `ip netns exec` (see tests/registry.py `probe`). The password,
if any, comes on stdin, never on the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
from pathlib import Path

import httpx

from hypr.errors import HyprError
from hypr.images.oci import Platform, host_platform
from hypr.images.reference import parse_reference
from hypr.images.registry import RegistryAuth, RegistryClient


async def _resolve(client: RegistryClient, args: argparse.Namespace) -> dict[str, object]:
    ref = parse_reference(args.ref)
    platform = Platform(*args.platform.split("/")) if args.platform else host_platform()
    image = await client.resolve(ref, platform)
    result: dict[str, object] = {
        "reference": str(image.reference),
        "digest": image.digest,
        "manifest_digest": image.manifest_digest,
        "media_type": image.manifest_media_type,
        "config": json.loads(image.config),
        "config_digest": image.config_descriptor.digest,
        "layers": [
            {"digest": d.digest, "size": d.size, "media_type": d.media_type} for d in image.layers
        ],
    }
    if args.blobs:
        blobs: dict[str, dict[str, object]] = {}
        for desc in image.layers:
            sha, size = hashlib.sha256(), 0
            async for chunk in client.stream_blob(ref, desc):
                sha.update(chunk)
                size += len(chunk)
            blobs[desc.digest] = {"sha256": f"sha256:{sha.hexdigest()}", "size": size}
        result["blobs"] = blobs
    return result


def _push_verbatim(layout: Path, tag: str, dest: str) -> dict[str, object]:
    """Upload an OCI layout's manifest and blobs byte for byte (skopeo would recompress an
    uncompressed layer); only to an open registry."""
    host, _, rest = dest.partition("/")
    name, _, dest_tag = rest.rpartition(":")
    blobs = layout / "blobs/sha256"
    index = json.loads((layout / "index.json").read_text())
    entry = next(
        m
        for m in index["manifests"]
        if m["annotations"]["org.opencontainers.image.ref.name"] == tag
    )
    manifest = (blobs / entry["digest"].removeprefix("sha256:")).read_bytes()
    body = json.loads(manifest)
    with httpx.Client(base_url=f"http://{host}") as http:
        for desc in [body["config"], *body["layers"]]:
            start = http.post(f"/v2/{name}/blobs/uploads/")
            start.raise_for_status()
            data = (blobs / desc["digest"].removeprefix("sha256:")).read_bytes()
            location = httpx.URL(start.headers["Location"])  # keeps the upload's _state
            done = http.put(
                location.copy_merge_params({"digest": desc["digest"]}),
                content=data,
                headers={"Content-Type": "application/octet-stream"},
            )
            done.raise_for_status()
        put = http.put(
            f"/v2/{name}/manifests/{dest_tag}",
            content=manifest,
            headers={"Content-Type": entry["mediaType"]},
        )
        put.raise_for_status()
    return {"ok": True, "digest": entry["digest"]}


async def _interrupted(client: RegistryClient, args: argparse.Namespace) -> dict[str, object]:
    """Stream the largest layer: after the first chunk print READY and wait for a line on
    stdin (the test kills the registry meanwhile), then read on."""
    ref = parse_reference(args.ref)
    image = await client.resolve(ref, host_platform())
    largest = max(image.layers, key=lambda d: d.size)
    received = 0
    async for chunk in client.stream_blob(ref, largest):
        if received == 0:
            print("READY", flush=True)
            sys.stdin.readline()
        received += len(chunk)
    return {"received": received, "size": largest.size}


async def _main(args: argparse.Namespace) -> dict[str, object]:
    auth = RegistryAuth(args.user, sys.stdin.readline().rstrip("\n")) if args.user else None
    async with RegistryClient(auth, insecure=args.insecure) as client:
        if args.command == "interrupted":
            return {"ok": True, **await _interrupted(client, args)}
        if args.command == "login":
            await client.check_login(args.ref)
            return {"ok": True}
        return {"ok": True, **await _resolve(client, args)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["resolve", "login", "push", "interrupted"])
    parser.add_argument("ref")
    parser.add_argument("--layout", type=Path)
    parser.add_argument("--tag")
    parser.add_argument("--user")
    parser.add_argument("--platform")
    parser.add_argument("--blobs", action="store_true")
    parser.add_argument("--insecure", action="append", default=[])
    args = parser.parse_args()
    try:
        if args.command == "push":
            result = _push_verbatim(args.layout, args.tag, args.ref)
        else:
            result = asyncio.run(_main(args))
    except HyprError as exc:
        result = {
            "ok": False,
            "error": type(exc).__name__,
            "status": exc.status,
            "message": exc.message,
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
