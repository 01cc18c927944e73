"""Stable hashes of plain data (the run ids, the dense pre-training's cache key, model versions and control seeds), and
the check of a shipped data file against its SHA-256."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def stable_hash(data: Any) -> str:
    """16 hex digits of the SHA-256 of ``data``'s canonical JSON (sorted keys): equal data, equal hash, anywhere."""
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_shipped(path: Path, sha256: str) -> bytes:
    """The bytes of a data file shipped with the package, once their SHA-256 is ``sha256``; a one-line error
    otherwise (the package's data is damaged)."""
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise ValueError(
            f"{path} has SHA-256 {digest}, not the shipped {sha256}: the package's data file is damaged; "
            "reinstall prunebench"
        )
    return data
