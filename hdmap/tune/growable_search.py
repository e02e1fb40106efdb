"""A search whose trial budget `--resume --num-samples N` can raise, also once it has finished.

Ray restores a search's sample budget from its checkpoint, so a resumed Tuner runs only what is left of the budget it
began with. This generator takes the budget a resume asks for once Ray has restored it."""
from __future__ import annotations

from ray.tune.search import SearchGenerator

from hdmap.config import ConfigError


class BudgetError(ConfigError):
    """A resumed search was asked for fewer trials than it has already, or cannot grow."""


class GrowableSearch(SearchGenerator):
    """Ray's SearchGenerator with a budget that a resume may raise (never lower)."""

    def __init__(self, searcher):
        super().__init__(searcher)
        self.raised_budget: int | None = None

    def raise_budget(self, num_samples: int) -> None:
        self.raised_budget = num_samples

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        wanted = getattr(self, "raised_budget", None)
        if wanted is None or wanted == self._total_samples:
            return
        if wanted < self._total_samples:
            raise BudgetError(f"--num-samples {wanted}: this search was begun with {self._total_samples} trials; a "
                              f"resumed search can grow, not shrink (resume without --num-samples to finish it)")
        self._total_samples, self._finished = wanted, False


def raise_restored_budget(tuner, num_samples: int) -> None:
    """Tell a restored Tuner's search the budget the resume asked for (read where Ray 2.60 keeps the TuneConfig)."""
    tune_config = getattr(getattr(tuner, "_local_tuner", None), "_tune_config", None)
    search = getattr(tune_config, "search_alg", None)
    if not isinstance(search, GrowableSearch):
        if num_samples == getattr(tune_config, "num_samples", None):
            return  # a search begun before budgets could grow resumes as it was begun
        raise BudgetError(f"--num-samples {num_samples}: this search cannot grow (it began under an hdmap or Ray that "
                          f"kept no growable budget); resume it without --num-samples, or start a new search")
    search.raise_budget(num_samples)
