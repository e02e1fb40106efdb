"""Finished trials' reported values by config, in the experiment's storage: a trial whose full config (with the
metric and --repeats) a finished trial already ran reports that trial's values instead of fitting again (TPE can
propose a config twice; the fit is deterministic), and only under the same hdmap code (`code_version`). Its row in the summary says whose result it reused, and its
checkpoint is that trial's."""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from hdmap.atomic_files import write_text_atomic


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """A digest of the installed hdmap's source: a search resumed after an upgrade fits again, never reusing a
    result the old code computed."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def config_key(config: dict, metric: str, repeats: int) -> str:
    text = json.dumps({"config": config, "metric": metric, "repeats": repeats, "code": code_version()},
                      sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class TrialResults:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def get(self, key: str) -> dict | None:
        path = self.folder / f"{key}.json"
        try:
            return json.loads(path.read_text()) if path.is_file() else None
        except (OSError, ValueError):
            return None  # an unreadable record: the trial runs

    def put(self, key: str, trial_id: str, values: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.folder / f"{key}.json", json.dumps({"trial_id": trial_id, "values": values},
                                                                  default=float))
