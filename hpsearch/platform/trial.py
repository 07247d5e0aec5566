"""The Ray adapter: a Tune Trainable that hands Tune one epoch of hpsearch's training loop per step.

The epochs run on a thread of their own, one ahead of Tune (`ahead.EpochsAhead`), so a trial does
not wait for the driver between them. Actors are reused between trials (`reset_config`), and the
dataset is loaded once per worker process (`load_dataset` is cached), so a short trial costs little
more than its epochs.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch

from hpsearch.platform import _ray_env  # noqa: F401  (before ray)
import ray
from ray import tune

from hpsearch.platform.ahead import Epoch, EpochsAhead
from hpsearch.search_spaces.objectives import Constraint
from hpsearch.search_spaces.space import flatten_config
from hpsearch.trainables import TrainConfig, TrainingSession, is_diverged, load_dataset
from hpsearch.trainables.plugins import add_paths

STATE_FILE = "training_state.pt"
MODEL_FILE = "model.pt"  # the weights alone, for users: torch.load + model.load_state_dict
CONFIG_FILE = "config.json"


class SearchTrial(tune.Trainable):
    """`setup` receives, through `tune.with_parameters`, what every trial of a search shares."""

    def setup(self, config: dict[str, Any], *, shared: Mapping[str, Any]) -> None:
        self._shared = shared
        # Where this trial runs: the tracker tags the run with it and uploads checkpoints from there.
        self._node_id = ray.get_runtime_context().get_node_id()
        add_paths(shared.get("plugin_paths", ()))
        use_hub_dir(shared.get("hub_dir"))
        torch.set_num_threads(training_threads(shared))
        self._session: TrainingSession | None = None
        self._ahead: EpochsAhead | None = None
        self._checkpoint: Path | None = None  # the folder of the last checkpointed epoch Tune took
        self._start(config)

    def _start(self, config: dict[str, Any]) -> None:
        replicate = config.get("replicate")
        if replicate is not None:  # a seed replicate: the repeated trial's own configuration, another seed
            self._train_config = TrainConfig.model_validate({**replicate["config"], "seed": replicate["seed"]})
        else:
            self._train_config = TrainConfig.from_settings(self._shared["train"], flatten_config(config))
        data = load_dataset(**self._shared["dataset"])
        self._end_trial()
        self._session = TrainingSession(self._train_config, data=data, device=_device())
        self._best_value: float | None = None
        self._best_epoch = 0
        self._cost_values: dict[str, float] | None = None  # measured before the first epoch
        self._constraints = [Constraint.parse(text) for text in self._shared.get("constraints", ())]

    def _broken(self, values: Mapping[str, float], *, before_training: bool) -> str:
        """The constraints `values` break, as `params <= 200000 (params 250,122)`; empty when none."""
        constraints = [constraint for constraint in self._constraints if constraint.before_training == before_training]
        return "; ".join(f"{constraint} ({constraint.metric} {values[constraint.metric]:,.6g})"
                         for constraint in constraints
                         if values.get(constraint.metric) is not None and not constraint.holds(values[constraint.metric]))

    def _infeasible(self, broken: str) -> dict[str, Any]:
        """The one result of a trial that ends before training: its costs, and the worst value of its
        metric (Tune wants one; the tracker logs no such value)."""
        metric, mode = self._shared["metric"], self._shared["mode"]
        worst = float("-inf") if mode == "max" else float("inf")
        return {**self._cost_values, metric: worst, f"best_{metric}": worst, "epoch": 0, "best_epoch": 0,
                "infeasible": True, "broken": broken, "should_checkpoint": False, "diverged": False, "done": True,
                "node_id": self._node_id}

    def _costs(self) -> dict[str, float]:
        from hpsearch.trainables.cost import measured_costs

        session = self._session
        return measured_costs(session.model, session.eval_input_shape, prune_amount=session.config.prune_amount,
                              autocast=lambda: session.precision.autocast(session.device))

    def cleanup(self) -> None:
        self._end_trial()

    def _end_trial(self) -> None:
        """Stop the trial's epochs, close its session, drop a checkpoint Tune did not save."""
        self._stop_epochs()
        if self._session is not None:
            self._session.close()
        self._keep_checkpoint(None)

    def _stop_epochs(self) -> None:
        """End the epochs' thread, interrupting an epoch Tune will not take (a stopped trial's)."""
        if self._ahead is not None:
            untaken = self._ahead.stop()
            if untaken is not None and untaken.checkpoint is not None:
                shutil.rmtree(untaken.checkpoint, ignore_errors=True)
            self._ahead = None

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        self._start(new_config)
        return True

    def step(self) -> dict[str, Any]:
        if self._ahead is None:  # started here, not in setup: a restored trial loads its checkpoint first
            self._ahead = EpochsAhead(self._epoch, interrupt=self._session.interrupt, threads=torch.get_num_threads())
        epoch = self._ahead.next()
        if epoch.checkpoint is not None:
            self._keep_checkpoint(epoch.checkpoint)
        return epoch.result

    def _keep_checkpoint(self, folder: Path | None) -> None:
        """Keep `folder` as the checkpoint Tune may save next; the one kept before is not needed."""
        if self._checkpoint is not None:
            shutil.rmtree(self._checkpoint, ignore_errors=True)
        self._checkpoint = folder

    def _epoch(self) -> Epoch:
        """The next epoch's result, on the epochs' thread, with its checkpoint's files when it is the best yet."""
        # A trial's costs, once, before its first epoch: on its own device and threads, not yet trained.
        # They go with every result (a searcher reads a trial's last), the tracker logs them once.
        if self._cost_values is None:
            self._cost_values = self._costs()
            broken = self._broken(self._cost_values, before_training=True)
            if broken:  # infeasible before it trains: the search's budget goes to feasible trials
                return Epoch(self._infeasible(broken))
        costs = self._cost_values
        metrics = self._session.run_epoch()
        metric, mode = self._shared["metric"], self._shared["mode"]
        value = metrics[metric]
        # A pruning trial's best epoch is one whose model is pruned, as it is saved; before that it has none.
        pruned = self._session.fully_pruned
        improved = pruned and value == value and (
            self._best_value is None or (value > self._best_value if mode == "max" else value < self._best_value))
        if improved:
            self._best_value, self._best_epoch = value, self._session.epoch
        best = self._best_value if self._best_value is not None else value if pruned else float("nan")
        diverged = is_diverged(metrics)
        broken = self._broken({**costs, **metrics}, before_training=False)  # peak_memory_mb, as training goes
        result = {
            **costs,
            **metrics,
            **({"infeasible": True, "broken": broken} if broken else {}),
            "epoch": self._session.epoch,
            f"best_{metric}": best,
            "best_epoch": self._best_epoch,
            # Only improvements are checkpointed: Tune's latest checkpoint is the best epoch's.
            "should_checkpoint": improved,
            "diverged": diverged,
            "done": self._session.finished or diverged or bool(broken),
            "node_id": self._node_id,
        }
        # Written now, to a folder of its own (on disk: held in memory it would count in peak_memory_mb):
        # by the time Tune asks for it, the next epoch is changing the weights.
        return Epoch(result, self._write_checkpoint(Path(tempfile.mkdtemp(prefix="hpsearch-epoch-"))) if improved
                     else None)

    def _write_checkpoint(self, directory: Path) -> Path:
        state = {**self._session.state_dict(), "best_value": self._best_value, "best_epoch": self._best_epoch,
                 "costs": self._cost_values}
        torch.save(state, directory / STATE_FILE)
        torch.save(self._session.eval_model.state_dict(), directory / MODEL_FILE)  # EMA weights, pruned
        (directory / CONFIG_FILE).write_text(self._train_config.model_dump_json(indent=2))
        return directory

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        # Tune saves after a result that asks for it (should_checkpoint; checkpoint_at_end is off): the
        # files of the best epoch, written when it ended, moved into Tune's folder.
        if self._checkpoint is None:
            raise RuntimeError("Tune asked for a checkpoint, and no epoch was checkpointed since the last it saved")
        for path in self._checkpoint.iterdir():
            shutil.move(path, Path(checkpoint_dir) / path.name)
        self._keep_checkpoint(None)

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        state = torch.load(Path(checkpoint_dir) / STATE_FILE, map_location=self._session.device, weights_only=False)
        self._session.load_state_dict(state)
        self._best_value, self._best_epoch = state["best_value"], state["best_epoch"]
        self._cost_values = state.get("costs")  # as measured before its first epoch, not again


def use_hub_dir(hub_dir: str | None) -> None:
    """Read zoo weights from the driver's torch hub cache where this node has that folder (a shared or
    identical path); else from the node's own."""
    if hub_dir and hub_dir != torch.hub.get_dir() and Path(hub_dir).is_dir():
        torch.hub.set_dir(hub_dir)


def training_threads(shared: Mapping[str, Any]) -> int:
    """A trial's torch threads: its cpus, less those its loader processes take."""
    workers = int(shared["dataset"].get("workers") or 0)
    return max(1, int(shared["cpus"]) - workers)


def _device() -> str:
    """The GPU Ray assigned to this trial, if any; Ray sets CUDA_VISIBLE_DEVICES accordingly."""
    import ray

    return "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"


def make_trainable(shared: Mapping[str, Any], *, cpus: float, gpus: float):
    return tune.with_resources(tune.with_parameters(SearchTrial, shared=dict(shared)), {"cpu": cpus, "gpu": gpus})


def evaluate_remote(config_json: str, model_bytes: bytes, dataset: Mapping[str, Any], cpus: float,
                    device: str | None = None, plugin_paths: tuple[str, ...] = (), hub_dir: str | None = None):
    """The test evaluation of a best trial, in this process or as a Ray task wherever Ray places it."""
    from hpsearch.trainables.evaluate import evaluate_on_test

    add_paths(plugin_paths)
    use_hub_dir(hub_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(cpus)))
    try:
        data = load_dataset(**dataset)
        return evaluate_on_test(TrainConfig.model_validate_json(config_json), model_bytes, data=data,
                                device=device or _device())
    finally:
        torch.set_num_threads(threads)
