"""Incremental seam merging for streaming inference: hold only the instances a later tile could touch.

Tiles are processed in row-major order. Once every tile whose window starts above raster row F has
been processed ("frontier" F = the smallest window row of the tiles still to come), a component of
the same-object graph whose parts all end at or above F (bbox row1 <= F) can gain no new part: it is
final, split into objects, merged and handed out. Components touching the frontier keep their raw
parts, so the final grouping equals merging all instances of the raster at once.
"""
from __future__ import annotations

from collections.abc import Sequence

from engine.merge.seams import Instance, objects_of_component, seam_components
from engine.tiling import Tile


def row_frontiers(tiles: Sequence[Tile]) -> list[int]:
    """frontiers[i]: the smallest window row among tiles[i:] (no tile from i on reads above it).

    After the first i tiles (row-major order) are processed, rows above frontiers[i] are final.
    """
    out = [0] * len(tiles)
    low = None
    for i in range(len(tiles) - 1, -1, -1):
        low = tiles[i].row_off if low is None else min(low, tiles[i].row_off)
        out[i] = low
    return out


class StreamingMerger:
    """`add` per-tile instances; `flush(frontier)` returns the objects no unprocessed tile can touch."""

    def __init__(self, overlap_threshold: float = 0.5) -> None:
        self.overlap_threshold = overlap_threshold
        self.pending: list[Instance] = []
        self.peak_pending = 0  # most raw instances held at once (memory bound check)

    def add(self, instances: list[Instance]) -> None:
        self.pending.extend(instances)
        self.peak_pending = max(self.peak_pending, len(self.pending))

    def flush(self, frontier_row: int | None) -> list[Instance]:
        """Merged objects whose parts all end at or above raster row `frontier_row` (None: everything)."""
        final, keep = [], []
        for members, edges in seam_components(self.pending, self.overlap_threshold):
            parts = [self.pending[i] for i in members]
            if frontier_row is None or max(p.bbox[2] for p in parts) <= frontier_row:
                final.extend(obj for _, obj in objects_of_component(self.pending, members, edges))
            else:
                keep.extend(parts)
        self.pending = keep
        return final
