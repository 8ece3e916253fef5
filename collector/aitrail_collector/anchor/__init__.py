"""Write-once stores for signed checkpoints, kept apart from the database:
a directory, or S3 with Object Lock in COMPLIANCE mode (``stores``)."""

from aitrail_collector.anchor.stores import (
                                             AnchorConflict,
                                             AnchorError,
                                             AnchorStore,
                                             DirectoryAnchor,
                                             S3Anchor,
                                             open_anchor,
)

__all__ = ["AnchorConflict", "AnchorError", "AnchorStore", "DirectoryAnchor", "S3Anchor",
           "open_anchor"]
