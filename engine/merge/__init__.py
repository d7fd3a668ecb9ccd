"""De-duplication of instance predictions across tile seams (all at once, or streaming)."""

from engine.merge.seams import (
    Instance,
    merge_group,
    merge_seam_duplicates,
    resolve_group,
    suppress_nested_duplicates,
)
from engine.merge.stream import StreamingMerger

__all__ = [
    "Instance", "StreamingMerger", "merge_group", "merge_seam_duplicates", "resolve_group",
    "suppress_nested_duplicates",
]
