"""Artifacts of a search's runs: trial checkpoints (uploaded from the node that wrote them), the best
trial's test evaluation, and lr range tests."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping

from hpsearch.platform.errors import first_line
from hpsearch.platform.tracking.runs import client_for, experiment_id_for, param_value
from hpsearch.platform.tracking.tags import CHECKPOINT_ARTIFACT, CREDENTIAL_VARIABLES, ROLE, SEARCH_NAME, resolve_uri

logger = logging.getLogger(__name__)


def log_lr_find(spec, *, params: Mapping[str, Any], suggested_lr: float, files: list[Path]) -> str:
    """An lr range test as its own run in the spec's experiment: the configuration, the suggestion, the plot."""
    from mlflow.entities import Metric, Param

    client = client_for(resolve_uri(spec.tracking.uri))
    experiment_id = experiment_id_for(client, spec.tracking.experiment)
    run = client.create_run(experiment_id, run_name=f"{spec.name}-lr-find",
                            tags={ROLE: "lr_find", SEARCH_NAME: spec.name})
    client.log_batch(run.info.run_id, metrics=[Metric("suggested_lr", suggested_lr, int(time.time() * 1000), 0)],
                     params=[Param(k, param_value(v)) for k, v in params.items()])
    for path in files:
        client.log_artifact(run.info.run_id, str(path))
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def log_test_evaluation(client, run_id: str, *, metrics: Mapping[str, float], confusion: list[list[int]]) -> None:
    """The best trial's test metrics, and its confusion matrix as CSV and PNG artifacts."""
    import tempfile

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(name, float(value), now, 0) for name, value in metrics.items()])
    client.set_tag(run_id, "hpsearch.best_trial", "true")
    with tempfile.TemporaryDirectory() as folder:
        csv_path = Path(folder) / "confusion_matrix.csv"
        classes = range(len(confusion))
        rows = ["true\\predicted," + ",".join(map(str, classes))]
        rows += [f"{label}," + ",".join(map(str, row)) for label, row in zip(classes, confusion)]
        csv_path.write_text("\n".join(rows) + "\n")
        png_path = _confusion_png(confusion, Path(folder) / "confusion_matrix.png",
                                  title=f"test accuracy {metrics.get('test_accuracy', float('nan')):.4f}")
        client.log_artifact(run_id, str(csv_path), "evaluation")
        client.log_artifact(run_id, str(png_path), "evaluation")


def _confusion_png(confusion: list[list[int]], path: Path, *, title: str) -> Path:
    """The confusion matrix as a heat map with its counts, drawn with Pillow.

    Drawn directly rather than with matplotlib: importing and laying out a matplotlib figure took
    about half a second at the end of every search, for an image of a table of numbers.
    """
    from PIL import Image, ImageDraw, ImageFont

    size = len(confusion)
    cell, margin_left, margin_top, margin_bottom = 34, 62, 40, 44
    font = ImageFont.load_default(size=12)
    small = ImageFont.load_default(size=11)
    width, height = margin_left + size * cell + 12, margin_top + size * cell + margin_bottom
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((width / 2, 14), title, fill="black", font=font, anchor="mm")
    largest = max((max(row) for row in confusion), default=0) or 1
    for row in range(size):
        for column in range(size):
            count = confusion[row][column]
            shade = count / largest  # white to dark blue, like matplotlib's "Blues"
            color = tuple(round(light + (dark - light) * shade) for light, dark in zip((247, 251, 255), (8, 48, 107)))
            x, y = margin_left + column * cell, margin_top + row * cell
            draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=color)
            if count:
                draw.text((x + cell / 2, y + cell / 2), str(count), font=small, anchor="mm",
                          fill="white" if shade > 0.5 else "black")
    grid_bottom = margin_top + size * cell
    draw.rectangle((margin_left - 1, margin_top - 1, margin_left + size * cell, grid_bottom), outline="black")
    for index in range(size):
        middle = index * cell + cell / 2
        draw.text((margin_left + middle, grid_bottom + 10), str(index), fill="black", font=small, anchor="mm")
        draw.text((margin_left - 10, margin_top + middle), str(index), fill="black", font=small, anchor="rm")
    draw.text((margin_left + size * cell / 2, height - 12), "predicted", fill="black", font=font, anchor="mm")
    label = Image.new("RGB", (60, 16), "white")
    ImageDraw.Draw(label).text((30, 8), "true", fill="black", font=font, anchor="mm")
    image.paste(label.rotate(90, expand=True), (4, margin_top + size * cell // 2 - 30))
    image.save(path)
    return path


def log_checkpoint(client, run_id: str, checkpoint, *, node_id: str | None = None,
                    tracking_uri: str | None = None) -> None:
    """The trial's best epoch's checkpoint (the only one Tune keeps) as the run's artifact.

    With Tune's storage on a local path, a checkpoint lies on the disk of the node whose trial wrote
    it. Which node that is, is decided by Ray node id, not by looking for the path on the driver: one
    path can exist on two hosts (same image, same working directory), and on a one-host test cluster
    every path exists everywhere. A checkpoint written on another node is uploaded by a small task
    pinned to that node, straight to the tracking store (through the tracking server's artifact proxy
    for an http URI). If that node is gone, the driver uploads the directory when it can read it
    (shared storage, `--storage`), and otherwise logs a warning: the search goes on without it.
    """
    import pyarrow.fs

    here = _driver_node_id()
    on_local_disk = isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem)
    if node_id is None or here is None or node_id == here or not on_local_disk or tracking_uri is None:
        with checkpoint.as_directory() as directory:
            client.log_artifacts(run_id, directory, CHECKPOINT_ARTIFACT)
        return
    try:
        _upload_from_node(node_id, tracking_uri=tracking_uri, run_id=run_id, directory=checkpoint.path)
    except Exception as error:  # noqa: BLE001  (the node is gone, or its disk with it)
        if Path(checkpoint.path).is_dir():  # shared storage: the driver reads it as well
            client.log_artifacts(run_id, checkpoint.path, CHECKPOINT_ARTIFACT)
            return
        logger.warning("hpsearch: the checkpoint of MLflow run %s was not uploaded: node %s, which holds it "
                       "at %s, cannot run the upload (%s)", run_id, node_id[:12], checkpoint.path,
                       first_line(error))


def _driver_node_id() -> str | None:
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


UPLOAD_TIMEOUT_S = 600.0  # a checkpoint upload from another node; a node that dies mid-way fails sooner


def _upload_from_node(node_id: str, *, tracking_uri: str, run_id: str, directory: str) -> None:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # No CPU: an upload waits on the network, and must not wait for a trial slot on a busy node.
    task = ray.remote(num_cpus=0, max_retries=0)(_upload_checkpoint).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False), name="hpsearch-checkpoint-upload")
    # The tracking server's login goes as an argument: in a runtime_env, Ray would log it on every node.
    login = {name: os.environ[name] for name in CREDENTIAL_VARIABLES if name in os.environ}
    ray.get(task.remote(tracking_uri, run_id, directory, login), timeout=UPLOAD_TIMEOUT_S)


def _upload_checkpoint(tracking_uri: str, run_id: str, directory: str, login: Mapping[str, str]) -> None:
    """Runs on the node that holds `directory`, with the driver's MLflow login for the upload only."""
    saved = {name: os.environ.get(name) for name in login}
    os.environ.update(login)
    try:
        client_for(tracking_uri).log_artifacts(run_id, directory, CHECKPOINT_ARTIFACT)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
