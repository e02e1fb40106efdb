"""Keeping the feature cache's size in hand: its entries (one folder per backbone, input setting and set of maps) with
their size and when a run last used them, a size cap (HDMAP_CACHE_MAX_GB) that evicts the least recently used
entries after each write, and `hdmap cache list|clear`. An entry another process holds (its lock) is never removed."""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

from hdmap.file_lock import LockHeldError, locked

MAX_GB_ENV = "HDMAP_CACHE_MAX_GB"
USED_FILE = "meta.json"  # its time stamp is touched on every hit: the entry's last use


def entries(root: str | Path) -> list[dict]:
    """Every complete entry under `root`, least recently used first."""
    root = Path(root)
    found = []
    for folder in root.iterdir() if root.is_dir() else []:
        meta_file = folder / USED_FILE
        if not folder.is_dir() or not meta_file.is_file():
            continue
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, ValueError):
            meta = {}
        size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        transform = meta.get("transform") or {}
        found.append({"key": folder.name, "folder": folder, "bytes": size, "last_used": meta_file.stat().st_mtime,
                      "backbone": (meta.get("backbone") or {}).get("name", "?"), "maps": meta.get("n_files"),
                      "input": f"{transform.get('image_size', '?')} px {transform.get('resize', '?')}",
                      "taps": sorted(int(t) for t in (meta.get("taps") or {}))})
    return sorted(found, key=lambda entry: entry["last_used"])


def touch(folder: Path) -> None:
    """Mark an entry used now (a hit)."""
    try:
        os.utime(folder / USED_FILE)
    except OSError:
        pass


def remove(entry: dict) -> bool:
    """Remove an entry unless another process holds it; whether it was removed."""
    try:
        with locked(entry["folder"].parent / f"{entry['key']}.lock", wait=False):
            shutil.rmtree(entry["folder"], ignore_errors=True)
    except LockHeldError:
        return False
    return True


def cap_bytes() -> int | None:
    value = os.environ.get(MAX_GB_ENV)
    if not value:
        return None
    try:
        gigabytes = float(value)
    except ValueError:
        raise ValueError(f"{MAX_GB_ENV}={value!r}: expects a number of GB") from None
    if not gigabytes > 0:
        raise ValueError(f"{MAX_GB_ENV}={value!r}: expects a number of GB > 0")
    return int(gigabytes * 1e9)


def evict_over_cap(root: str | Path, keep: str) -> list[str]:
    """With HDMAP_CACHE_MAX_GB set: remove least recently used entries (never `keep`, the one just written) until
    the cache fits the cap; say what was removed."""
    cap = cap_bytes()
    if cap is None:
        return []
    found = entries(root)
    total = sum(entry["bytes"] for entry in found)
    removed = []
    for entry in found:
        if total <= cap:
            break
        if entry["key"] != keep and remove(entry):
            total -= entry["bytes"]
            removed.append(entry["key"])
    if removed:
        print(f"[hdmap] feature cache over {MAX_GB_ENV}={cap / 1e9:g}: removed {len(removed)} least recently used "
              f"entr{'y' if len(removed) == 1 else 'ies'}; {total / 1e9:.1f} GB kept", file=sys.stderr)
    return removed


def describe(root: str | Path) -> list[str]:
    """`hdmap cache list`: one line per entry, then the total."""
    found = entries(root)
    lines = [f"{'last used':<17} {'GB':>7}  {'maps':>6}  backbone, input, taps  (entry)"]
    for entry in reversed(found):
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry["last_used"]))
        lines.append(f"{when:<17} {entry['bytes'] / 1e9:7.2f}  {entry['maps'] or '?':>6}  {entry['backbone']}, "
                     f"{entry['input']}, taps {entry['taps']}  ({entry['key']})")
    total = sum(entry["bytes"] for entry in found)
    cap = cap_bytes()
    lines.append(f"{len(found)} entries, {total / 1e9:.2f} GB in {root}" +
                 (f" (cap {MAX_GB_ENV}={cap / 1e9:g} GB)" if cap else f" (no cap: set {MAX_GB_ENV})"))
    return lines


def clear(root: str | Path, older_than_days: float | None = None) -> tuple[int, int]:
    """Remove entries (those unused for `older_than_days`, else all) that no process holds; (removed, kept)."""
    limit = time.time() - older_than_days * 86400 if older_than_days is not None else None
    removed = kept = 0
    for entry in entries(root):
        if limit is not None and entry["last_used"] > limit:
            kept += 1
            continue
        if remove(entry):
            removed += 1
        else:
            kept += 1
    return removed, kept
