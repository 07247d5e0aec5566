"""Ray's OptunaSearch, returning suggestions in the nested form of Ray's variant generator."""
from __future__ import annotations

from hpsearch.platform import _ray_env  # noqa: F401  (before ray)
from ray.tune.search.optuna import OptunaSearch

from hpsearch.platform.space import OPTUNA_CONFIG_KEY


class BranchAwareOptunaSearch(OptunaSearch):
    """Defined at module level: Tune pickles the searcher with the experiment state."""

    def suggest(self, trial_id: str):
        suggestion = super().suggest(trial_id)
        if isinstance(suggestion, dict) and OPTUNA_CONFIG_KEY in suggestion:
            return suggestion[OPTUNA_CONFIG_KEY]
        return suggestion
