"""A .npy file written batch by batch: header first, the whole size reserved on disk before any data (a full disk
is an OSError at the start, never a SIGBUS inside a memory map), then filled through a memory map. The file is
byte-for-byte what np.save writes for the same array."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def reserved_npy(path: Path, shape: tuple[int, ...], dtype) -> np.memmap:
    """A writable memory map of a new .npy file at `path` of `shape` and `dtype`, its blocks allocated."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)}
    with open(path, "wb") as file:
        np.lib.format.write_array_header_1_0(file, header)
        offset = file.tell()
        file.flush()
        size = offset + int(np.prod(shape)) * np.dtype(dtype).itemsize
        os.posix_fallocate(file.fileno(), 0, size)
    return np.memmap(path, dtype=dtype, mode="r+", offset=offset, shape=tuple(shape))
