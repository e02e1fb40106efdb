"""A .npy file written batch by batch: header first, the whole size reserved on disk before any data (a full disk
is an OSError at the start, never a SIGBUS inside a memory map), then filled through a memory map. The file is
byte-for-byte what np.save writes for the same array."""
from __future__ import annotations

import mmap
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


RELEASE_EVERY = 256  # rows read between two releases of a memory map's pages


def release_pages(array) -> None:
    """Drop the pages of a read-only memory map (np.load(mmap_mode='r')) from this process's resident memory: they
    are clean file pages, read again from the page cache when touched. Reading a whole cached domain through its
    memory maps would otherwise count every page of it in the fit's resident memory. No-op for in-memory arrays and
    where the platform has no madvise."""
    mapped = getattr(array, "_mmap", None)
    while mapped is None and getattr(array, "base", None) is not None:
        array = array.base
        mapped = getattr(array, "_mmap", None)
    if mapped is not None and hasattr(mapped, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        mapped.madvise(mmap.MADV_DONTNEED)
