"""The rows of pulled images: `layers`, `images`, `image_layers`, `image_tags`,
`image_digests` (migration 6). Files live in the image store; these rows say which are
whole and which images use them, so a row exists only for a file already complete."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime

from hypr.state.db import Database


@dataclass(frozen=True)
class LayerRow:
    diff_id: str
    blob_digest: str
    blob_size: int
    size: int


@dataclass(frozen=True)
class ImageRow:
    id: str
    config: str
    manifest_media_type: str
    created: str
    pulled: str
    size: int
    diff_ids: tuple[str, ...]
    tags: tuple[str, ...]  # canonical references, sorted
    digests: tuple[str, ...]


class ImageRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def layer(self, diff_id: str) -> LayerRow | None:
        row = self.db.conn.execute(
            "SELECT diff_id, blob_digest, blob_size, size FROM layers WHERE diff_id = ?",
            (diff_id,),
        ).fetchone()
        return LayerRow(*row) if row else None

    def record(
        self,
        image: ImageRow,
        layers: list[LayerRow],
        tag: str | None,
        digest: str | None,
    ) -> None:
        """Write an image, its layers and its names at once; a tag moves to this image
        (as a re-pulled tag does), the layers already known are kept as they are."""
        now = datetime.now(UTC).isoformat()
        with self.db.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO layers (diff_id, blob_digest, blob_size, size, created) "
                "VALUES (?, ?, ?, ?, ?)",
                [(x.diff_id, x.blob_digest, x.blob_size, x.size, now) for x in layers],
            )
            conn.execute(
                "INSERT OR IGNORE INTO images "
                "(id, config, manifest_media_type, created, pulled, size) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (image.id, image.config, image.manifest_media_type, image.created, now, image.size),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO image_layers (image_id, idx, diff_id) VALUES (?, ?, ?)",
                [(image.id, i, d) for i, d in enumerate(image.diff_ids)],
            )
            if tag:
                self.tag(tag, image.id)
            if digest:
                conn.execute(
                    "INSERT OR REPLACE INTO image_digests (reference, image_id) VALUES (?, ?)",
                    (digest, image.id),
                )

    def tag(self, reference: str, image_id: str) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO image_tags (reference, image_id) VALUES (?, ?)",
                (reference, image_id),
            )

    def unname(self, reference: str) -> bool:
        """Drop a tag or a repo digest (canonical)."""
        with self.db.transaction() as conn:
            tags = conn.execute("DELETE FROM image_tags WHERE reference = ?", (reference,))
            digests = conn.execute("DELETE FROM image_digests WHERE reference = ?", (reference,))
            return tags.rowcount + digests.rowcount > 0

    def by_name(self, reference: str) -> ImageRow | None:
        """The image a canonical tag or digest reference names."""
        row = self.db.conn.execute(
            "SELECT image_id FROM image_tags WHERE reference = ? "
            "UNION SELECT image_id FROM image_digests WHERE reference = ?",
            (reference, reference),
        ).fetchone()
        return self.get(row[0]) if row else None

    def by_id_prefix(self, prefix: str) -> list[ImageRow]:
        rows = self.db.conn.execute(
            "SELECT id FROM images WHERE id LIKE ? ORDER BY id", (f"sha256:{prefix}%",)
        ).fetchall()
        return [image for (image_id,) in rows if (image := self.get(image_id))]

    def get(self, image_id: str) -> ImageRow | None:
        row = self.db.conn.execute(
            "SELECT id, config, manifest_media_type, created, pulled, size FROM images "
            "WHERE id = ?",
            (image_id,),
        ).fetchone()
        return self._full(row) if row else None

    def all(self) -> list[ImageRow]:
        rows = self.db.conn.execute(
            "SELECT id, config, manifest_media_type, created, pulled, size FROM images "
            "ORDER BY pulled DESC"
        ).fetchall()
        return [self._full(row) for row in rows]

    def delete(self, image_id: str) -> list[str]:
        """Remove an image and its names; return the diff_ids no image uses any more (the
        caller removes their files after this commits)."""
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM images WHERE id = ?", (image_id,))
            orphans = [
                r[0]
                for r in conn.execute(
                    "SELECT diff_id FROM layers WHERE diff_id NOT IN "
                    "(SELECT diff_id FROM image_layers)"
                )
            ]
            conn.executemany("DELETE FROM layers WHERE diff_id = ?", [(d,) for d in orphans])
        return orphans

    def _full(self, row: sqlite3.Row) -> ImageRow:
        conn = self.db.conn
        image_id = row["id"]
        diff_ids = conn.execute(
            "SELECT diff_id FROM image_layers WHERE image_id = ? ORDER BY idx", (image_id,)
        ).fetchall()
        tags = conn.execute(
            "SELECT reference FROM image_tags WHERE image_id = ? ORDER BY reference", (image_id,)
        ).fetchall()
        digests = conn.execute(
            "SELECT reference FROM image_digests WHERE image_id = ? ORDER BY reference",
            (image_id,),
        ).fetchall()
        return ImageRow(
            id=image_id,
            config=row["config"],
            manifest_media_type=row["manifest_media_type"],
            created=row["created"],
            pulled=row["pulled"],
            size=row["size"],
            diff_ids=tuple(r[0] for r in diff_ids),
            tags=tuple(r[0] for r in tags),
            digests=tuple(r[0] for r in digests),
        )
