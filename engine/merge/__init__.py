"""Merging per-tile predictions: instance seam de-duplication (all at once or streaming) and overlap-blended
stitching of semantic class probabilities (streamed in strips of rows)."""

from engine.merge.seams import (
    Instance,
    merge_group,
    merge_seam_duplicates,
    resolve_group,
    suppress_nested_duplicates,
)
from engine.merge.stitch import StripStitcher, stitch_tiles, tile_weights
from engine.merge.stream import StreamingMerger, row_frontiers

__all__ = [
    "Instance", "StreamingMerger", "StripStitcher", "merge_group", "merge_seam_duplicates", "resolve_group",
    "row_frontiers", "stitch_tiles", "suppress_nested_duplicates", "tile_weights",
]
