"""Which settings mattered: Optuna's fANOVA importance evaluator over a search's finished trials, and a plot of the
objective against each of the most important parameters."""
from __future__ import annotations

import math
import sys
from pathlib import Path

from hdmap.atomic_files import atomic_path
from hdmap.tune.spaces import SearchSpace, _encode, decode

EVALUATOR = "Optuna FanovaImportanceEvaluator (random-forest fANOVA, seed 0)"
MIN_TRIALS = 4


def _distribution(param):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if param.distribution == "choice":
        return CategoricalDistribution([_encode(v) for v in param.values])
    if param.distribution == "int":
        return IntDistribution(int(param.values[0]), int(param.values[1]), step=int(param.step or 1))
    return FloatDistribution(float(param.values[0]), float(param.values[1]), log=param.distribution == "loguniform",
                             step=param.step)


def importances(space: SearchSpace, rows: list[dict]) -> dict[str, float]:
    """{parameter: importance (shares summing to 1)} over finished trials with a finite objective, for the
    parameters present in every such trial; {} with fewer than MIN_TRIALS trials or a constant objective."""
    import optuna

    rows = [r for r in rows if r["objective"] is not None and math.isfinite(r["objective"])]
    if len(rows) < MIN_TRIALS or len({r["objective"] for r in rows}) < 2:
        return {}
    distributions = {p.key: _distribution(p) for p in space.params}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    for row in rows:
        params = {k: (v if distributions[k].__class__.__name__ == "CategoricalDistribution" else decode(v))
                  for k, v in row["config"].items() if k in distributions}
        study.add_trial(optuna.trial.create_trial(params=params, value=row["objective"],
                                                  distributions={k: distributions[k] for k in params}))
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    try:
        return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
    except (RuntimeError, ValueError) as error:  # e.g. no parameter set in every trial: say so, keep the summary
        print(f"[hdmap] parameter importances not computed: {error}", file=sys.stderr)
        return {}


def _label(value) -> str:
    return "all / none" if value is None else str(value)


def _order(value):
    """Numbers in numeric order, then other values by name, None (e.g. shots: all of train) last."""
    if value is None:
        return (2, 0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value, "")
    return (1, 0, str(value))


def plot_top_parameters(rows: list[dict], ranked: dict[str, float], path: Path, metric: str, top: int = 4) -> bool:
    """Objective against each of the `top` most important parameters (one small panel each)."""
    keys = list(ranked)[:top]
    if not keys:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), squeeze=False)
    for ax, key in zip(axes[0], keys):
        points = [(decode(r["config"][key]), r["objective"]) for r in rows
                  if key in r["config"] and r["objective"] is not None and math.isfinite(r["objective"])]
        values = [v for v, _ in points]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            ax.plot(values, [o for _, o in points], "o", alpha=0.7)
        else:
            names = [label for _, label in sorted({(_order(v), _label(v)) for v in values})]
            ax.plot([names.index(_label(v)) for v in values], [o for _, o in points], "o", alpha=0.7)
            ax.set_xticks(range(len(names)), names, rotation=30, fontsize=7)
        ax.set_title(f"{key} ({ranked[key]:.2f})", fontsize=8)
        ax.set_ylabel(f"tune {metric}", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as target:
        fig.savefig(target, dpi=100)
    plt.close(fig)
    return True
