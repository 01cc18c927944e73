"""Reading one array of a ``.npz`` archive whose header is checked before its data is read, so that a damaged or
foreign file is refused in one line instead of allocating what its header claims."""

from __future__ import annotations

import math
import zipfile
from collections.abc import Callable

import numpy as np

_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def read_checked_array(
    archive: zipfile.ZipFile,
    key: str,
    accept: Callable[[np.dtype, tuple[int, ...]], str | None],
    damaged: Callable[[str], Exception],
) -> np.ndarray:
    """The array ``key`` of ``archive``, once its ``.npy`` header passes ``accept(dtype, shape)`` (which returns what
    is wrong, or ``None``) and its data size agrees with the archive's stated size; else ``damaged(reason)`` is
    raised. Fortran-ordered arrays are refused (the writers never make them)."""
    info = archive.getinfo(f"{key}.npy")
    with archive.open(info) as stream:
        version = np.lib.format.read_magic(stream)
        read_header = _HEADERS.get(version)
        if read_header is None:
            raise damaged(f"{key} has an unknown .npy version {version}")
        shape, fortran, dtype = read_header(stream)
        wrong = "is Fortran-ordered" if fortran else accept(dtype, shape)
        if wrong is not None:
            raise damaged(f"{key} {wrong}")
        size = math.prod(shape) * dtype.itemsize
        if size != info.file_size - stream.tell():
            raise damaged(
                f"{key} states {size} bytes of data, the file holds {info.file_size - stream.tell()}"
            )
        data = stream.read(size)
    if len(data) != size:
        raise damaged(f"{key} is cut short")
    return np.frombuffer(data, dtype=dtype).reshape(shape)
