"""Stable hashes of plain data: the run ids, the dense pre-training's cache key, model versions and control seeds."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def stable_hash(data: Any) -> str:
    """16 hex digits of the SHA-256 of ``data``'s canonical JSON (sorted keys): equal data, equal hash, anywhere."""
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
