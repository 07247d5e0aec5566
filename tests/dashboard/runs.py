"""Searches written into a real MLflow store the way hpsearch's tracker writes them, trial by trial,
for tests that need exact control over which runs are new, running or finished."""
from __future__ import annotations

import random
import time

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from hpsearch.platform import tags

SEARCH_ID = "handmade-20261122-000000-0000"


def make_search(client: MlflowClient, *, search_id: str = SEARCH_ID) -> str:
    experiment_id = client.create_experiment(f"exp-{search_id}")
    parent = client.create_run(experiment_id, tags={
        tags.ROLE: "search", tags.SEARCH_ID: search_id, tags.SEARCH_NAME: search_id.split("-")[0],
        tags.STATUS: "running", tags.ALGORITHM: "random", tags.METRIC: "val_accuracy", tags.MODE: "max",
        tags.PLANNED_TRIALS: "10"}, run_name=search_id)
    return parent.info.run_id


def add_trial(client: MlflowClient, parent_run_id: str, number: int, *, epochs: int = 3, finish: bool = True,
              optimizer: str = "adam", lr: float | None = None) -> str:
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    rng = random.Random(number)
    run = client.create_run(experiment_id, run_name=f"trial_{number:05d}", tags={
        tags.PARENT: parent_run_id, tags.ROLE: "trial", tags.TRIAL_ID: f"abc_{number:05d}",
        tags.STATUS: "running", tags.SEARCH_ID: SEARCH_ID})
    params = {"optimizer": optimizer, "lr": lr if lr is not None else 10 ** rng.uniform(-4, -1),
              "batch_size": rng.choice([32, 64])}
    if optimizer == "sgd":
        params["momentum"] = 0.9
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    log_epochs(client, run.info.run_id, range(1, epochs + 1), seed=number)
    if finish:
        finish_trial(client, run.info.run_id)
    return run.info.run_id


def log_epochs(client: MlflowClient, run_id: str, epochs, *, seed: int) -> None:
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    metrics = []
    best = 0.0
    for epoch in epochs:
        accuracy = min(0.99, 0.5 + 0.1 * epoch + rng.uniform(-0.05, 0.05))
        best = max(best, accuracy)
        metrics += [Metric("val_accuracy", accuracy, now, epoch), Metric("val_loss", 1 - accuracy, now, epoch),
                    Metric("epoch", epoch, now, epoch), Metric("best_val_accuracy", best, now, epoch),
                    Metric("best_epoch", epoch, now, epoch)]
    client.log_batch(run_id, metrics=metrics)


def finish_trial(client: MlflowClient, run_id: str, status: str = "completed") -> None:
    client.set_tag(run_id, tags.STATUS, status)
    client.set_terminated(run_id, "FINISHED")
