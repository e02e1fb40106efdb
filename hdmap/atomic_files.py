"""Result files are written atomically: to a temporary name beside the target, then renamed over it, so a killed
run never leaves a half-written file that a later command reads. The temporary name is unique to the writer
(process id and a random part), so two writers on a shared folder (trials on two nodes) never write into one file."""
from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path):
    """Yields a temporary path (same folder, same suffix) to write; renamed to `path` when the block succeeds."""
    path = Path(path)
    temporary = unique_partial(path)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def unique_partial(path: Path) -> Path:
    """A temporary name beside `path`, with its suffix (np.save keeps a name that ends in .npy), unique to this
    writer."""
    return path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.partial{path.suffix}")


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_text(text)
    return Path(path)
