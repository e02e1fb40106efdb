"""The files of a search folder that Ray's restore unpickles (tuner.pkl, the searcher's state, the experiment state,
trials' params.pkl), checked before `--resume` hands the folder to Ray: their digests are recorded when the search
ends (however it ends) and a resume refuses a file that changed, appeared or went missing since, naming it. A folder
without the record (a search begun by an older hdmap, or one killed with `kill -9`) resumes only with
--trust-search-files: unpickling a crafted file runs its code."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from hdmap.atomic_files import write_text_atomic
from hdmap.config import ConfigError

DIGESTS_FILE = "hdmap_search_files.json"
OWN_RECORDS = {"hdmap_search.json", "summary.json", DIGESTS_FILE}  # hdmap's data-only records, read as JSON


def unpickled_files(exp_dir: Path) -> list[Path]:
    """Every file of the folder a restore may unpickle: pickles anywhere, Ray's JSON states at the top."""
    found = {p for p in exp_dir.rglob("*.pkl") if p.is_file()}
    found |= {p for p in exp_dir.glob("*.json") if p.is_file() and p.name not in OWN_RECORDS}
    return sorted(found)


def digests(exp_dir: Path) -> dict[str, str]:
    return {p.relative_to(exp_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in unpickled_files(exp_dir)}


def record_search_files(exp_dir: Path) -> None:
    write_text_atomic(exp_dir / DIGESTS_FILE, json.dumps(digests(exp_dir), indent=1))


def check_search_files(exp_dir: Path, trust: bool = False) -> None:
    """A ConfigError naming the first file Ray would unpickle that is not as the search left it."""
    if trust:
        return
    record = exp_dir / DIGESTS_FILE
    if not record.is_file():
        raise ConfigError(f"{exp_dir}: no record of the files this search left ({DIGESTS_FILE}; a search begun by an "
                          f"older hdmap, or killed with kill -9): resuming unpickles tuner.pkl and the searcher's "
                          f"state, which can run code. If you trust this folder, resume with --trust-search-files")
    recorded, now = json.loads(record.read_text()), digests(exp_dir)
    for name in sorted(set(recorded) | set(now)):
        if recorded.get(name) != now.get(name):
            what = ("appeared" if name not in recorded else "is missing" if name not in now
                    else "changed")
            raise ConfigError(f"{exp_dir / name}: {what} since this search ended; Ray would unpickle it on --resume "
                              f"(which can run code). If you trust this folder, resume with --trust-search-files")
