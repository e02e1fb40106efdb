"""A search space fitted to the data it searches: before Ray starts, the choices of a data-dependent setting that
the data cannot hold are dropped (an integer range is clipped), with a note the summary keeps; a setting left with
no valid choice is an error naming it and the limit. Each kind states the limits of its data-dependent settings
(`ModelKind.space_limits`, built from hdmap/run/data_limits.py): today the references per condition of PatchCore (`model.shots`) and of few-shot FE-CLIP
(`fewshot.shots`), bounded by how many train maps the gate assigns to the smaller condition."""
from __future__ import annotations

import sys

from hdmap.config import ConfigError
from hdmap.kinds.registry import kind_of
from hdmap.tune.spaces import Param, SearchSpace


def clip_param(param: Param, most: int, null_holds: bool = True) -> list:
    """The values of `param` dropped to respect `most` (and None, all of train, where it does not hold); edits
    `param`."""
    if param.distribution == "choice":
        dropped = [v for v in param.values if (isinstance(v, int) and not isinstance(v, bool) and v > most)
                   or (v is None and not null_holds)]
        param.values = [v for v in param.values if v not in dropped]
        return dropped
    low, high = param.values
    if high <= most:
        return []
    if low > most:
        param.values = []
        return [f"[{low}, {high}]"]
    param.values = [low, int(most) if param.distribution == "int" else most]
    return [f"({most}, {high}]"]


def unreachable_after(space: SearchSpace, parent: Param, dropped: list) -> list[str]:
    """Parameters searched only `when:` the parent takes a value just dropped: they are never searched now."""
    notes = []
    for param in space.params:
        wanted = param.when.get(parent.key)
        if wanted is None or parent.distribution != "choice":
            continue
        wanted = wanted if isinstance(wanted, list) else [wanted]
        if not any(value in parent.values for value in wanted):
            notes.append(f"search space fitted to the data: '{param.key}' is searched only when {parent.key} is "
                         f"{wanted}, all dropped: it is not searched")
    return notes


def fit_space_to_data(space: SearchSpace, base_config: dict, data) -> list[str]:
    """Drop what `data` cannot hold from `space` (in place); returns the notes (also printed and added to
    `space.notes`). A searched setting left with no value is a ConfigError naming it and its limit."""
    notes = []
    for limit_of in kind_of(space.model_name).space_limits:
        limit = limit_of(space, base_config, data.train_maps, data.train_truth)
        param = next((p for p in space.params if p.key == limit.key), None)
        if param is None:
            continue
        dropped = clip_param(param, limit.most, limit.null_holds)
        if not param.values:
            raise ConfigError(f"{space.source}: parameter '{limit.key}': no choice this data can hold: at most "
                              f"{limit.most} ({limit.why})")
        if dropped:
            notes.append(f"search space fitted to the data: '{limit.key}' dropped {dropped}: at most {limit.most} "
                         f"({limit.why})")
            notes += unreachable_after(space, param, dropped)
    for note in notes:
        print(f"[hdmap] {note}", file=sys.stderr)
    space.notes.extend(notes)
    return notes
