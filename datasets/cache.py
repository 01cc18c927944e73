"""A verified on-disk cache of decoded arrays, so that each process does not parse the same source again.

The embedded MNIST digits come as a gzipped CSV that takes about 3 s of CPU to parse, in every worker process of a
grid; decoded once, they load in milliseconds. A cache file holds the arrays and two SHA-256 digests: of the
source file's bytes (a changed source, e.g. another package version, is decoded again) and of the arrays' own bytes
(a truncated or altered cache is never trusted). Anything that does not verify is rebuilt and replaced atomically;
a cache that cannot be written (a read-only home) is skipped, and the decoded arrays are used as they are.

Location: ``$PRUNEBENCH_CACHE``, else ``$XDG_CACHE_HOME/prunebench``, else ``~/.cache/prunebench``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from prunebench.core.atomic_files import atomic_file

CACHE_VARIABLE = "PRUNEBENCH_CACHE"
Arrays = dict[str, np.ndarray]


def cache_root() -> Path:
    """``$PRUNEBENCH_CACHE``, else ``$XDG_CACHE_HOME/prunebench``, else ``~/.cache/prunebench``."""
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "prunebench"


def file_digest(path: Path) -> str:
    """SHA-256 of the bytes of ``path``."""
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def arrays_digest(arrays: Arrays) -> str:
    """SHA-256 of the arrays' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(json.dumps([name, array.dtype.str, array.shape]).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _load(path: Path, source_digest: str) -> Arrays | None:
    """The arrays cached at ``path`` when they verify against ``source_digest`` and their own digest, else ``None``."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            meta = json.loads(bytes(stored["__meta__"]).decode())
            arrays = {name: stored[name] for name in stored.files if name != "__meta__"}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError):
        return None
    if meta.get("source_sha256") != source_digest or meta.get("arrays_sha256") != arrays_digest(arrays):
        return None
    return arrays


def _store(path: Path, arrays: Arrays, source_digest: str) -> None:
    meta = {"source_sha256": source_digest, "arrays_sha256": arrays_digest(arrays)}
    buffer = io.BytesIO()
    np.savez(buffer, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    with atomic_file(path, "wb") as stream:
        stream.write(buffer.getvalue())


def cached_arrays(name: str, source: Path, decode: Callable[[], Arrays], root: Path | None = None) -> Arrays:
    """The arrays that ``decode()`` makes from the file ``source``, read from the cache ``name`` when it verifies,
    else decoded and cached (see the module docstring)."""
    path = (root or cache_root()) / f"{name}.npz"
    digest = file_digest(source)
    arrays = _load(path, digest)
    if arrays is not None:
        return arrays
    arrays = decode()
    try:
        _store(path, arrays, digest)
    except OSError:
        pass  # a cache that cannot be written only costs the next process the decoding
    return arrays
