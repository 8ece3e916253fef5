"""What a verification trusts, where each part came from, and whether it is independent.

A verification is only as good as its trust root: the public key its checkpoint
signatures are checked with, and the anchor store its checkpoints are compared
with. A key or an anchor kept inside the data directory sits in the very thing
it is meant to protect: whoever can write the data directory can rewrite the
records, re-sign every checkpoint with ``signing-key.pem`` and rewrite
``anchor/``, and the verification still says OK. So every report names its trust
root, and one that is not independent of the data directory makes the verdict
read ``OK, but ...`` (``verdict``). Pure: no I/O beyond resolving paths.
"""

from __future__ import annotations

import os
from typing import Any, Optional

NOT_INDEPENDENT = "this cannot detect a rewrite by someone who can write the data directory"

# Where a part of the trust root came from (the "source" fields).
FROM_FLAG_KEY = "--public-key"
FROM_FLAG_ANCHOR = "--anchor"
FROM_DATA_DIR = "data directory default"
FROM_COLLECTOR = "the collector's own key"
FROM_COLLECTOR_ANCHOR = "the collector's own anchor"


def is_inside(path: Optional[str], data_dir: Optional[str]) -> bool:
    """Whether ``path`` is ``data_dir`` or under it, symlinks resolved. URLs such as
    ``s3://...`` are never inside; ``file:///x`` is the path ``/x``."""
    if not path or not data_dir:
        return False
    if path.startswith("file://"):
        path = path[len("file://"):]
    elif "://" in path:
        return False
    real, root = os.path.realpath(path), os.path.realpath(data_dir)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def trust_root(*, data_dir: Optional[str], key_path: Optional[str], key_id: Optional[str],
               key_source: Optional[str], anchor: Optional[str], anchor_describe: Optional[str],
               anchor_source: Optional[str],
               anchor_inside: Optional[bool] = None) -> dict[str, Any]:
    """The trust-root report: ``public_key``, ``anchor``, ``data_dir``, ``independent``
    and ``warnings``. ``key_path`` / ``anchor`` are what was given (a path or URL)."""
    warnings: list[str] = []
    key_inside = is_inside(key_path, data_dir)
    if anchor_inside is None:  # else known already (a collector's report said so)
        anchor_inside = is_inside(anchor, data_dir)
    if key_id is None:
        warnings.append("no public key: checkpoint signatures were not checked, so deleting "
                        "the newest records together with their checkpoints goes unnoticed")
    elif key_inside:
        warnings.append(f"the public key {key_path} is inside the data directory {data_dir}: "
                        "whoever can write there can replace it and re-sign a rewritten "
                        "history; pass --public-key with a copy kept elsewhere")
    elif key_source == FROM_COLLECTOR:
        warnings.append("the signatures were checked with the key the collector serves, not "
                        "one you hold; pass --public-key with a copy kept elsewhere")
    if anchor is None and anchor_describe is None:
        warnings.append("no anchor store: the checkpoints were not compared with a copy "
                        "kept apart from the database")
    elif anchor_inside:
        warnings.append(f"the anchor {anchor} is inside the data directory"
                        f"{' ' + data_dir if data_dir else ''}: whoever can write there can "
                        "rewrite it too; use --anchor s3://... or a directory on another "
                        "machine")
    independent = key_id is not None and not key_inside and not anchor_inside \
        and (anchor is not None or anchor_describe is not None)
    return {
        "public_key": None if key_id is None else {
            "path": key_path, "key_id": key_id, "source": key_source,
            "inside_data_dir": key_inside},
        "anchor": None if anchor_describe is None and anchor is None else {
            "location": anchor, "describe": anchor_describe, "source": anchor_source,
            "inside_data_dir": anchor_inside},
        "data_dir": data_dir,
        "independent": independent,
        "warnings": warnings,
    }


def verdict_ok(report: dict[str, Any]) -> str:
    """``OK`` or ``OK, but <why not independent>``, from the report's trust root only."""
    root = report.get("trust_root")
    if isinstance(root, dict) and root.get("independent") is False:
        return f"OK, but {NOT_INDEPENDENT}"
    return "OK"


__all__ = ["FROM_COLLECTOR", "FROM_COLLECTOR_ANCHOR", "FROM_DATA_DIR", "FROM_FLAG_ANCHOR",
           "FROM_FLAG_KEY", "NOT_INDEPENDENT", "is_inside", "trust_root", "verdict_ok"]
