"""`hpsearch lr-find`: the learning-rate range test on a spec's first configuration, plotted and tracked."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpsearch.search_spaces.spec import Spec


@dataclass(frozen=True)
class LrFindOutcome:
    suggested_lr: float
    plot: Path
    table: Path
    run_id: str
    config: dict[str, Any]


def first_configuration(spec: Spec) -> dict[str, Any]:
    """The parameters of the spec's first trial: the first grid point, or the first seeded sample."""
    import numpy as np

    from hpsearch.platform import _ray_env  # noqa: F401  (before ray)
    from ray.tune.search.variant_generator import generate_variants

    from hpsearch.platform.tune_space import to_ray
    from hpsearch.search_spaces.space import flatten_config

    algorithm = "random" if spec.search.algorithm == "optuna" else spec.search.algorithm
    variants = generate_variants(to_ray(spec.space, algorithm), random_state=np.random.RandomState(spec.search.seed))
    _, config = next(iter(variants))
    return flatten_config(config)


def run_lr_find(spec: Spec, *, out: Path, num_steps: int = 200) -> LrFindOutcome:
    import torch

    from hpsearch.platform import tracking
    from hpsearch.trainables import TrainConfig, load_dataset
    from hpsearch.trainables.lr_find import lr_range_test
    from hpsearch.trainables.plugins import add_paths

    add_paths(spec.plugin_paths)
    params = first_configuration(spec)
    config = TrainConfig.from_settings(spec.train.model_dump(), params)
    torch.set_num_threads(max(1, int(spec.resources.cpus)))
    data = load_dataset(**spec.dataset.model_dump())
    device = "cuda" if spec.resources.gpus and torch.cuda.is_available() else "cpu"
    result = lr_range_test(config, data=data, device=device, num_steps=num_steps)
    out.mkdir(parents=True, exist_ok=True)
    table = out / "lr_find.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["lr", "smoothed_loss"])
        writer.writerows(result.as_rows())
    plot = _plot(result, out / "lr_find.png", title=f"{spec.name}: {config.model}, {config.optimizer}, "
                                                    f"batch {config.batch_size}")
    run_id = tracking.log_lr_find(spec, params=params, suggested_lr=result.suggested_lr, files=[plot, table])
    return LrFindOutcome(result.suggested_lr, plot, table, run_id, params)


def _plot(result, path: Path, *, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    axes.plot(result.lrs, result.losses, color="tab:blue")
    axes.axvline(result.suggested_lr, color="tab:red", linestyle="--",
                 label=f"suggested lr {result.suggested_lr:.2g}")
    axes.set(xscale="log", xlabel="learning rate", ylabel="training loss (smoothed)", title=title)
    axes.legend()
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
