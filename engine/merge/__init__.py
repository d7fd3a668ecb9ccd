"""De-duplication of instance predictions across tile seams."""

from engine.merge.seams import Instance, merge_seam_duplicates

__all__ = ["Instance", "merge_seam_duplicates"]
