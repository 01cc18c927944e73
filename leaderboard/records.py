"""Reading run records from one or more results directories."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prunebench.config import RECORD_VERSION


class RecordWarning(UserWarning):
    """A record that was skipped (malformed, truncated, or of another record version)."""


def load_records(directories: Iterable[Path]) -> list[dict[str, Any]]:
    """Every readable record under ``<dir>/runs/*.json`` of each directory; unreadable ones are warned about."""
    records = []
    for directory in directories:
        for path in sorted(Path(directory).glob("runs/*.json")):
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError) as error:
                warnings.warn(f"skipped {path}: not a readable record ({error})", RecordWarning, stacklevel=2)
                continue
            if not isinstance(record, dict) or record.get("version") != RECORD_VERSION:
                found = record.get("version") if isinstance(record, dict) else None
                warnings.warn(
                    f"skipped {path}: record version {found!r}, this prunebench reads version {RECORD_VERSION}",
                    RecordWarning,
                    stacklevel=2,
                )
                continue
            record["_path"] = str(path)
            records.append(record)
    return records
