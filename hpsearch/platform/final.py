"""From a search to a model: finalize (retrain on train + validation, test once, register) and use it.

`finalize_search` retrains a search's chosen configuration on its training and validation data
for the epochs it chose, evaluates it once on the test split, and logs it with
`mlflow.pytorch.log_model` as a run under the search's parent run (tagged `final`), registered in
the MLflow Model Registry with the alias `candidate` (`champion` with `promote`). The model's
preprocessing (image size, channels, normalization, class names) is stored with it, so
`load_model` and `predict` apply it to any image file.
"""
from __future__ import annotations

import io
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from hpsearch.platform import query, tracking
from hpsearch.platform.tracking import tags

FINAL_ROLE = "final"
CANDIDATE, CHAMPION = "candidate", "champion"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# Pillow's modes by the channels they decode to: an image of the other kind does not fit a model.
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})


class FinalizeError(ValueError):
    """A search, trial, model or image that cannot be used: one line saying which and why."""


@dataclass(frozen=True)
class Finalized:
    run_id: str
    model_uri: str
    name: str
    version: str
    trial: str
    epochs: int
    test: dict[str, float]
    aliases: tuple[str, ...]
    costs: dict[str, float] = field(default_factory=dict)  # its trial's, measured in the search


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for eval, with what its images need: `preprocess(paths)` gives the batch."""

    module: Any  # torch.nn.Module, in eval mode
    classes: tuple[str, ...]
    image_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    uri: str

    def preprocess(self, images: Sequence[str | Path]) -> Any:
        """Image files as the model takes them: decoded, resized and centre-cropped, normalized."""
        import torch

        batch = torch.stack([self._decode(Path(image)) for image in images]).float()
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return (batch - mean) / std

    def predict(self, images: Sequence[str | Path], *, top_k: int = 1) -> list[list[tuple[str, float]]]:
        """For each image, its `top_k` classes with their probabilities, most likely first."""
        import torch

        with torch.no_grad():
            probabilities = torch.softmax(self.module(self.preprocess(images)).float(), dim=1)
        best = probabilities.topk(min(top_k, len(self.classes)), dim=1)
        return [[(self.classes[index], float(value)) for value, index in zip(values.tolist(), indices.tolist())]
                for values, indices in zip(best.values, best.indices)]

    def _decode(self, path: Path):
        from PIL import Image, UnidentifiedImageError

        from hpsearch.trainables.images import _resize_and_crop, pil_to_tensor

        try:
            with Image.open(path) as image:
                gray = image.mode in _GRAY_MODES
                if gray != (self.channels == 1):
                    kind = "grayscale (1 channel)" if gray else "colour (3 channels)"
                    takes = "grayscale images (1 channel)" if self.channels == 1 else "colour images (3 channels)"
                    raise FinalizeError(f"{path}: a {kind} image; the model takes {takes}")
                image = image.convert("L" if self.channels == 1 else "RGB")
                return pil_to_tensor(_resize_and_crop(image, self.image_size))
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
            if isinstance(error, FinalizeError):
                raise
            raise FinalizeError(f"{path}: not a readable image ({str(error).splitlines()[0] if str(error) else type(error).__name__})") from None


# ------------------------------------------------------------------------------------------------ finalize

def finalize_search(search: str, *, tracking_uri: str | None = None, trial: str | None = None,
                    name: str | None = None, promote: bool = False, address: str | None = None,
                    progress: Callable[[str], None] = print) -> Finalized:
    """Retrain `search`'s best (or `trial`'s) configuration on train + validation, test it once,
    log and register it; FinalizeError names what is wrong before anything is written.

    Attached to a Ray cluster (`address`, or $RAY_ADDRESS in a job that `hpsearch submit finalize`
    started), the training runs as a Ray task with the search's resources per trial, on whichever node
    Ray finds them (a GPU node for a GPU search); otherwise in this process."""
    from hpsearch.platform import replicates
    from hpsearch.platform.search import _shared, init_ray, ray_address
    from hpsearch.search_spaces.spec import validate_spec
    from hpsearch.trainables.plugins import add_paths

    uri = tags.credentials_to_environment(query.resolve_uri(tracking_uri))
    found = query.find_search(search, uri)
    table = query.trials(found, uri)
    replicated = replicates.summary(found, uri, table)
    chosen = _chosen_trial(found, table, trial, replicated)
    chosen["costs"] = _trial_costs(table, chosen["run_id"])
    client = tracking.client_for(uri)
    import yaml

    spec = validate_spec(yaml.safe_load(Path(client.download_artifacts(found.run_id, tracking.SPEC_ARTIFACT))
                                        .read_text()), base_dir=found.spec_dir)
    recorded = tracking.recorded_data(client, found.run_id) if spec.dataset.is_image_source else None
    shared = _shared(spec, recorded)
    add_paths(shared["plugin_paths"])
    from hpsearch.trainables import TrainConfig

    with tempfile.TemporaryDirectory() as folder:
        config_path = Path(client.download_artifacts(chosen["run_id"], f"{tracking.CHECKPOINT_ARTIFACT}/config.json",
                                                     folder))
        trained = TrainConfig.model_validate_json(config_path.read_text())
    # The epochs its trial chose; with replicates, the mean of their best epochs (one seed's is noisy).
    epochs = max(1, int(round(chosen.get("best_epoch_mean", chosen["best_epoch"]))))
    config = trained.model_copy(update={"epochs": epochs, "warmup_epochs": min(trained.warmup_epochs, epochs - 1)
                                        if trained.warmup_epochs < epochs else 0.0})
    chose = (f"the mean best epoch of its {replicated['table'].set_index('trial').loc[chosen['trial'], 'seeds']} "
             f"replicates" if "best_epoch_mean" in chosen else "its best epoch")
    cluster = ray_address(address)
    where = f"as a Ray task on the cluster at {cluster}" if cluster else "in this process"
    progress(f"finalizing search {found.search_id}: trial {chosen['trial']}'s configuration, {epochs} epochs ({chose}) "
             f"on training + validation data, {where}; the test split is evaluated once at the end")
    arguments = (config.model_dump_json(), shared["dataset"])
    options = dict(cpus=spec.resources.cpus, gpus=spec.resources.gpus, plugin_paths=shared["plugin_paths"],
                   hub_dir=shared["hub_dir"])
    started = time.monotonic()
    if cluster:
        import ray

        init_ray(address)
        task = ray.remote(num_cpus=spec.resources.cpus, num_gpus=spec.resources.gpus)(train_final)
        result = ray.get(task.options(name="hpsearch-finalize").remote(*arguments, **options))
        for epoch, metrics in enumerate(result["history"], start=1):
            progress(_epoch_line(epoch, epochs, metrics))
    else:
        result = train_final(*arguments, **options, progress=progress)
    progress(f"  trained on {result['images']:,} training and validation images in {time.monotonic() - started:.0f} s")
    return _log_and_register(client, uri=uri, found=found, spec=spec, chosen=chosen, config=config,
                             model=result["model"], preprocessing=result["preprocessing"], test=result["test"],
                             history=result["history"], name=name or spec.name, promote=promote)


def train_final(config_json: str, dataset: dict[str, Any], *, cpus: float, gpus: float,
                plugin_paths: Sequence[str] = (), hub_dir: str | None = None,
                progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train a final model on train + validation and test it once: here, or as a Ray task anywhere.
    Returns the model (on the CPU, in eval mode), its test figures, its epochs' metrics and its
    preprocessing."""
    import torch

    from hpsearch.platform.trial import use_hub_dir
    from hpsearch.trainables import TrainConfig, TrainingSession, load_dataset
    from hpsearch.trainables.plugins import add_paths

    add_paths(plugin_paths)
    use_hub_dir(hub_dir)
    config = TrainConfig.model_validate_json(config_json)
    data = _train_and_val(load_dataset(**dataset))
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(cpus)))
    session = TrainingSession(config, data=data, device="cuda" if gpus and torch.cuda.is_available() else "cpu")
    try:
        while not session.finished:
            metrics = session.run_epoch(validate=False)
            if progress is not None:
                progress(_epoch_line(session.epoch, config.epochs, metrics))
        confusion = torch.zeros(data.num_classes, data.num_classes, dtype=torch.long)
        test = {f"test_{key}": value for key, value in session.evaluate_metrics(data.test, confusion=confusion).items()}
    finally:
        session.close()
        torch.set_num_threads(threads)
    return {"model": session.eval_model.cpu().eval(), "test": test, "history": session.history,
            "preprocessing": _preprocessing(data, session.eval_input_shape), "images": len(data.train)}


def _epoch_line(epoch: int, epochs: int, metrics: dict[str, float]) -> str:
    return f"  epoch {epoch}/{epochs}: train_loss {metrics['train_loss']:.4f}, train_accuracy {metrics['train_accuracy']:.4f}"


def _chosen_trial(found, table, trial: str | None, replicated: dict[str, Any] | None) -> dict[str, Any]:
    """The best trial (by mean over seeds where replicates exist), or `trial`; with its replicates'
    mean best epoch as `best_epoch_mean` where it has them."""
    finished = table[table["status"].isin(["completed", "stopped_early"])] if not table.empty else table
    stats = replicated["table"] if replicated else None
    if trial is None:
        if finished.empty:
            raise FinalizeError(f"search {found.search_id!r} has no completed trial to finalize")
        try:
            return query.best_of(found, finished, replicated=replicated)
        except query.SearchNotFound as error:
            raise FinalizeError(str(error)) from None
    rows = table[table["trial"] == trial] if not table.empty else table
    if rows.empty:
        known = sorted(table["trial"]) if not table.empty else []
        raise FinalizeError(f"search {found.search_id!r} has no trial {trial!r}; its trials: {known[:20]}"
                            f"{' ...' if len(known) > 20 else ''}")
    row = rows.iloc[0]
    if row["status"] not in ("completed", "stopped_early") or row.get("best_epoch") != row.get("best_epoch"):
        raise FinalizeError(f"trial {trial!r} of search {found.search_id!r} is {row['status']}; finalize a trial "
                            f"that completed")
    chosen = {"trial": row["trial"], "run_id": row["run_id"], "best_epoch": int(row["best_epoch"])}
    if stats is not None and (stats["trial"] == trial).any():
        chosen["best_epoch_mean"] = float(stats.loc[stats["trial"] == trial, "best_epoch_mean"].iloc[0])
    return chosen


def _trial_costs(table, run_id: str) -> dict[str, float]:
    """The costs the search measured for a trial (trainables/cost.py): the final model has its
    architecture, so they are its costs too, on the machines the search ran on."""
    from hpsearch.trainables.cost import COSTS

    row = table[table["run_id"] == run_id].iloc[0]
    return {name: float(row[name]) for name in COSTS if name in row.index and row[name] == row[name]}


def _train_and_val(data):
    """The dataset with its validation split folded into training: what a final model learns from."""
    import dataclasses

    import torch

    from hpsearch.trainables.data import Split, StreamedSplit

    if isinstance(data.train, Split):
        merged: Any = Split(torch.cat([data.train.images, data.val.images]), torch.cat([data.train.labels, data.val.labels]))
    else:
        merged = StreamedSplit(torch.utils.data.ConcatDataset([data.train.dataset, data.val.dataset]), data.train.shape)
    return dataclasses.replace(data, train=merged, val=merged)


def _preprocessing(data, input_shape: tuple[int, int, int]) -> dict[str, Any]:
    channels, height, _ = input_shape  # the size the model is evaluated at (eval_image_size)
    classes = list(data.classes) or [str(index) for index in range(data.num_classes)]
    return {"image_size": int(height), "channels": int(channels), "mean": list(data.mean), "std": list(data.std),
            "classes": classes}


def _log_and_register(client, *, uri, found, spec, chosen, config, model, preprocessing, test, history, name,
                      promote) -> Finalized:
    import mlflow
    import mlflow.pytorch
    import torch
    from mlflow.entities import Metric, Param
    from mlflow.models import infer_signature

    channels, size = preprocessing["channels"], preprocessing["image_size"]
    # Two images: with one, torch.export would fix the batch size at 1.
    example = np.zeros((2, channels, size, size), dtype=np.float32)
    with torch.no_grad():
        output = model(torch.from_numpy(example)).numpy()
    signature = infer_signature(example, output)
    run = client.create_run(found.experiment_id, run_name=f"{found.search_id}-final", tags={
        # Nested under the search's parent run; readers of its trials leave the role `final` out.
        tags.ROLE: FINAL_ROLE, tags.SEARCH_ID: found.search_id, tags.PARENT: found.run_id, "hpsearch.final.trial": str(chosen["trial"]),
        "hpsearch.final.trial_run_id": chosen["run_id"]})
    run_id = run.info.run_id
    try:
        costs = chosen.get("costs", {})
        client.log_batch(run_id, params=[Param(key, str(value)) for key, value in
                                         {**config.model_dump(mode="json"), "trained_on": "train+val"}.items()],
                         metrics=[Metric(key, float(value), int(time.time() * 1000), 0)
                                  for key, value in {**test, **costs}.items()])
        for epoch, metrics in enumerate(history, start=1):
            client.log_batch(run_id, metrics=[Metric(key, float(value), int(time.time() * 1000), epoch)
                                              for key, value in metrics.items() if key.startswith("train_")])
        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(uri)  # log_model and register_model write through the fluent API
        _quiet_export()
        try:
            with mlflow.start_run(run_id=run_id):
                info = mlflow.pytorch.log_model(
                    model, name="model", signature=signature, input_example=example,
                    pip_requirements=_requirements(), metadata={"hpsearch_preprocessing": preprocessing},
                    registered_model_name=name)
        finally:
            mlflow.set_tracking_uri(previous)
        version = str(info.registered_model_version)
        version_tags = {"hpsearch.search_id": found.search_id, "hpsearch.spec_hash": spec.spec_hash(),
                        "hpsearch.trial": str(chosen["trial"]),
                        **{key: f"{value:.6g}" for key, value in {**test, **costs}.items()}}
        commit = tracking.git_commit()
        if commit:
            version_tags["hpsearch.git_commit"] = commit
        for key, value in version_tags.items():
            client.set_model_version_tag(name, version, key, value)
        aliases = [CANDIDATE] + ([CHAMPION] if promote else [])
        for alias in aliases:
            client.set_registered_model_alias(name, alias, version)
        client.set_terminated(run_id, "FINISHED")
    except Exception:
        client.set_terminated(run_id, "FAILED")
        raise
    return Finalized(run_id=run_id, model_uri=f"models:/{name}/{version}", name=name, version=version,
                     trial=str(chosen["trial"]), epochs=config.epochs, test=test, aliases=tuple(aliases),
                     costs=dict(costs))


def _quiet_export() -> None:
    """torch.export, which MLflow saves the model with, logs how it traced every dimension."""
    import logging

    for name in ("torch._export", "torch.export", "torch.fx.experimental.symbolic_shapes", "torch._dynamo",
                 "torch.utils._sympy"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{package}=={version(package)}" for package in ("torch", "torchvision", "hpsearch")]


# ------------------------------------------------------------------------------------------------ use

def load_model(model: str, tracking_uri: str | None = None) -> LoadedModel:
    """`models:/name@alias`, `models:/name/3`, `runs:/ID/model`, or a search id or name (its latest final
    model), loaded for eval with its preprocessing."""
    import mlflow
    import mlflow.pytorch
    from mlflow.exceptions import MlflowException

    uri = query.resolve_uri(tracking_uri)
    model_uri = _model_uri(model, uri)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        info = mlflow.models.get_model_info(model_uri)
        module = mlflow.pytorch.load_model(model_uri, map_location="cpu")
    except MlflowException as error:
        raise FinalizeError(f"no model {model!r} in {tags.redact_uri(uri)} ({str(error).splitlines()[0]})") from None
    finally:
        mlflow.set_tracking_uri(previous)
    pre = (info.metadata or {}).get("hpsearch_preprocessing")
    if not pre:
        raise FinalizeError(f"{model!r} was not logged by hpsearch finalize: it records no preprocessing")
    # Logged as a torch.export program ("pt2", MLflow's default: loading runs no pickled code), traced in
    # eval mode: its module() is the model, ready for inference.
    module = module.module() if hasattr(module, "module") and not hasattr(module, "eval_mode_only") and \
        type(module).__name__ == "ExportedProgram" else module
    return LoadedModel(module, tuple(pre["classes"]), int(pre["image_size"]), int(pre["channels"]),
                       tuple(pre["mean"]), tuple(pre["std"]), model_uri)


def _model_uri(model: str, uri: str) -> str:
    if model.startswith(("models:/", "runs:/", "mlflow-artifacts:/", "file:/")):
        return model
    try:
        found = query.find_search(model, uri)
    except query.SearchNotFound as error:
        raise FinalizeError(f"{model!r} is neither a model URI (models:/NAME@ALIAS, models:/NAME/VERSION, "
                            f"runs:/ID/model) nor a search: {error}") from None
    client = tracking.client_for(uri)
    finals = client.search_runs([found.experiment_id], filter_string=f"tags.`{tags.ROLE}` = '{FINAL_ROLE}' and "
                                f"tags.`{tags.SEARCH_ID}` = '{found.search_id}'", order_by=["start_time DESC"],
                                max_results=1)
    if not finals:
        raise FinalizeError(f"search {found.search_id!r} has no finalized model; run hpsearch finalize "
                            f"{found.search_id}")
    return f"runs:/{finals[0].info.run_id}/model"


def image_files(paths: Iterable[str]) -> list[Path]:
    """The image files named, folders read recursively (an ImageFolder tree works), sorted."""
    found: list[Path] = []
    for entry in paths:
        path = Path(entry).expanduser()
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise FinalizeError(f"{entry}: no such file or folder")
    if not found:
        raise FinalizeError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, paths))}")
    return found


def predict_rows(model: LoadedModel, files: Sequence[Path], *, top_k: int = 1, batch: int = 64) -> list[dict]:
    """One row per image: path, class, probability, and the top k as `top_k`."""
    rows = []
    for start in range(0, len(files), batch):
        chunk = files[start:start + batch]
        for path, ranked in zip(chunk, model.predict(chunk, top_k=top_k)):
            rows.append({"path": str(path), "class": ranked[0][0], "probability": round(ranked[0][1], 6),
                         **({"top_k": [{"class": c, "probability": round(p, 6)} for c, p in ranked]}
                            if top_k > 1 else {})})
    return rows


def format_rows(rows: list[dict], style: str) -> str:
    if style == "json":
        return json.dumps(rows, indent=2)
    flat = [{**{key: value for key, value in row.items() if key != "top_k"},
             **({"top_k": " ".join(f"{item['class']}:{item['probability']:.4f}" for item in row["top_k"])}
                if "top_k" in row else {})} for row in rows]
    import pandas as pd

    frame = pd.DataFrame(flat)
    if style == "csv":
        buffer = io.StringIO()
        frame.to_csv(buffer, index=False)
        return buffer.getvalue().rstrip("\n")
    return frame.to_string(index=False)


__all__ = ["FinalizeError", "Finalized", "LoadedModel", "finalize_search", "format_rows", "image_files", "load_model",
           "predict_rows"]
