"""Did-you-mean hints for error messages (no heavy imports: the CLI and query layer use it)."""
from __future__ import annotations

import difflib
from typing import Iterable, Mapping

# Names people reach for that mean one of ours.
ALIASES: Mapping[str, str] = {
    "tpe": "optuna", "bayes": "optuna", "bayesian": "optuna", "hyperopt": "optuna",
    "learning_rate": "lr", "learningrate": "lr", "wd": "weight_decay", "l2": "weight_decay",
    "bs": "batch_size", "batchsize": "batch_size", "n_epochs": "epochs", "num_epochs": "epochs",
    "bn": "batchnorm", "batch_norm": "batchnorm", "arch": "model", "architecture": "model",
    "opt": "optimizer", "samples": "num_samples", "trials": "num_samples", "n_trials": "num_samples",
}


def did_you_mean(name: object, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' when a choice, or an alias of one, is close to `name`; else ''."""
    choices = list(choices)
    aliases = {alias: target for alias, target in ALIASES.items() if target in choices}
    text = str(name)
    matches = difflib.get_close_matches(text, choices, n=1, cutoff=0.6) or \
        difflib.get_close_matches(text.lower(), [*choices, *aliases], n=1, cutoff=0.7)
    return f" (did you mean {aliases.get(matches[0], matches[0])!r}?)" if matches else ""
