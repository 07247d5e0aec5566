"""Seed replicates: is the winner really better, or did it draw a lucky seed?

A search ranks its trials by one training seed each, on one validation split. Replicates train the
top configurations again with new training seeds (weights, batch order, dropout and augmentation;
the data split stays fixed), in parallel on Ray, as child runs of the same search tagged with the
trial they repeat. Each configuration then has a mean, a standard deviation and a 95% confidence
interval (Student's t) of its best validation metric over the replicates' seeds. The original
trial is left out of those figures: it was picked for scoring high, so its value is biased upwards.
Once a search has replicates, its winner is the configuration with the best mean.
"""
from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from hpsearch.platform import query, tracking
from hpsearch.platform.tracking import tags
from hpsearch.platform.tracking.index import runs_frame

ROLE = "replicate"
FINISHED = ("completed", "stopped_early")
CONFIDENCE = 0.95
STATISTICS_COLUMNS = ["trial", "seeds", "mean", "std", "ci_low", "ci_high", "best_epoch_mean", "single_seed",
                      "run_ids"]


class ReplicateError(ValueError):
    """A search that cannot be replicated: one line saying why."""


@dataclass(frozen=True)
class Planned:
    """One replicate to run: trial `of`'s configuration with training seed `seed`."""

    of: str
    seed: int
    config: dict[str, Any]  # the trial's TrainConfig, as its checkpoint recorded it
    params: dict[str, str]  # the trial's MLflow params, as its run has them
    variant: str | None = None  # an ablation run: the technique switched off (ablation.ALL_ON for none)

    def as_tune_config(self) -> dict[str, Any]:
        planned = {"of": self.of, "seed": self.seed, "config": self.config, "params": self.params}
        return planned if self.variant is None else {**planned, "variant": self.variant}


def training_seeds(original: int, count: int) -> list[int]:
    """`count` training seeds, none the original trial's: 1, 2, 3, ... skipping `original`."""
    seeds, candidate = [], 1
    while len(seeds) < count:
        if candidate != original:
            seeds.append(candidate)
        candidate += 1
    return seeds


def child_runs(found: query.Search, tracking_uri: str, role: str) -> pd.DataFrame:
    """The search's child runs of `role` (replicate, ablation), as `runs_frame` shapes them."""
    client = tracking.client_for(tracking_uri)
    return runs_frame(query._paged(lambda token: client.search_runs(
        [found.experiment_id], filter_string=f"tags.`{tags.PARENT}` = '{found.run_id}' and "
                                             f"tags.`{tags.ROLE}` = '{role}'", max_results=50_000, page_token=token)))


def replicate_runs(found: query.Search, tracking_uri: str) -> pd.DataFrame:
    """One row per replicate run of `found`: of (the trial repeated), seed, status, value (its best
    metric), best_epoch, run_id."""
    frame = child_runs(found, tracking_uri, ROLE)
    columns = ["of", "seed", "status", "value", "best_epoch", "run_id"]
    if not frame.empty:  # a replicate that failed before it started has no tags to say what it repeats
        frame = frame.dropna(subset=[column for column in (f"tags.{tags.REPLICATE_OF}", f"tags.{tags.REPLICATE_SEED}")
                                     if column in frame] or ["run_id"])
        if f"tags.{tags.REPLICATE_OF}" not in frame:
            frame = frame.iloc[0:0]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    metric = f"metrics.best_{found.metric}"
    table = pd.DataFrame({
        "of": frame[f"tags.{tags.REPLICATE_OF}"].astype(str),
        "seed": pd.to_numeric(frame[f"tags.{tags.REPLICATE_SEED}"]).astype(int),
        "status": frame.get(f"tags.{tags.STATUS}", pd.Series("unknown", index=frame.index)),
        "value": pd.to_numeric(frame[metric]) if metric in frame else float("nan"),
        "best_epoch": pd.to_numeric(frame["metrics.best_epoch"]) if "metrics.best_epoch" in frame else float("nan"),
        "run_id": frame["run_id"],
    })
    return query.with_search_status(table.sort_values(["of", "seed"], ignore_index=True), found.status)


def statistics(runs: pd.DataFrame, trials: pd.DataFrame, *, metric: str, mode: str) -> pd.DataFrame:
    """Per replicated configuration, best first: seeds (replicates that finished), mean, std, the 95%
    interval of the mean, the mean best epoch, and the original trial's single-seed value."""
    done = runs[runs["status"].isin(FINISHED) & runs["value"].notna()] if not runs.empty else runs
    if done.empty:
        return pd.DataFrame(columns=STATISTICS_COLUMNS)
    single = dict(zip(trials["trial"], trials.get(f"best_{metric}", pd.Series(dtype=float)))) if not trials.empty else {}
    rows = []
    for of, group in done.groupby("of", sort=False):
        values = group["value"].astype(float)
        low, high = interval(values.tolist())
        rows.append({"trial": of, "seeds": len(values), "mean": float(values.mean()),
                     "std": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
                     "ci_low": low, "ci_high": high, "best_epoch_mean": float(group["best_epoch"].mean()),
                     "single_seed": single.get(of, float("nan")), "run_ids": group["run_id"].tolist()})
    table = pd.DataFrame(rows, columns=STATISTICS_COLUMNS)
    return table.sort_values("mean", ascending=mode == "min", ignore_index=True)


def interval(values: list[float]) -> tuple[float, float]:
    """The 95% confidence interval of the mean of `values` (Student's t); NaN with fewer than two."""
    count = len(values)
    if count < 2:
        return float("nan"), float("nan")
    from scipy import stats

    mean = sum(values) / count
    std = math.sqrt(sum((value - mean) ** 2 for value in values) / (count - 1))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, count - 1)) * std / math.sqrt(count)
    return mean - half, mean + half


def verdict(table: pd.DataFrame, *, metric: str) -> str:
    """Plainly: whether the leader's interval overlaps the others' (then the data do not separate them)."""
    if table.empty:
        return "no configuration has finished replicates"
    leader = table.iloc[0]
    if len(table) == 1:
        return f"only trial {leader['trial']}'s configuration was replicated: there is nothing to compare it with"
    if not (leader["ci_low"] == leader["ci_low"]):
        return f"trial {leader['trial']} leads, but a configuration with fewer than 2 finished seeds has no interval"
    overlapping = [str(row["trial"]) for _, row in table.iloc[1:].iterrows()
                   if row["ci_low"] == row["ci_low"] and row["ci_low"] <= leader["ci_high"]
                   and leader["ci_low"] <= row["ci_high"]]
    if overlapping:
        others = ", ".join(overlapping)
        return (f"the 95% intervals of trial {leader['trial']} and trial{'s' if len(overlapping) > 1 else ''} "
                f"{others} overlap: these seeds do not show that trial {leader['trial']}'s configuration is better "
                f"on {metric}")
    return (f"trial {leader['trial']}'s 95% interval does not overlap any other replicated configuration's: its "
            f"lead on {metric} holds across seeds")


def choice_rule(table: pd.DataFrame, *, metric: str, mode: str) -> str:
    best = "highest" if mode == "max" else "lowest"
    if table.empty:
        return f"the {best} best {metric} of a single seed (no replicates)"
    seeds = sorted(set(table["seeds"]))
    shown = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
    return f"the {best} mean best {metric} over {shown} new training seeds (replicates; the split is fixed)"


def format_statistics(table: pd.DataFrame) -> str:
    """The statistics as a text table, for the summary and `hpsearch best`."""
    if table.empty:
        return "(no replicates)"
    shown = pd.DataFrame({
        "trial": table["trial"], "seeds": table["seeds"], "mean": table["mean"].map("{:.4f}".format),
        "std": table["std"].map(lambda v: "-" if v != v else f"{v:.4f}"),
        "95% interval": [("-" if low != low else f"[{low:.4f}, {high:.4f}]")
                         for low, high in zip(table["ci_low"], table["ci_high"])],
        "single seed": table["single_seed"].map(lambda v: "-" if v != v else f"{v:.4f}"),
        "best epoch": table["best_epoch_mean"].map("{:.1f}".format),
    })
    return shown.to_string(index=False)


def summary(found: query.Search, tracking_uri: str, trials: pd.DataFrame | None = None) -> dict[str, Any] | None:
    """The replicates of a search as `query.best` reports them; None when it has none."""
    runs = replicate_runs(found, tracking_uri)
    if runs.empty:
        return None
    if trials is None:
        trials = query.trials(found, tracking_uri)
    table = statistics(runs, trials, metric=found.metric, mode=found.mode)
    return {"table": table, "runs": runs, "verdict": verdict(table, metric=found.metric),
            "rule": choice_rule(table, metric=found.metric, mode=found.mode)}


# ------------------------------------------------------------------------------------------------ running them

def plan(found: query.Search, trials: pd.DataFrame, runs: pd.DataFrame, *, top_k: int, seeds: int,
         client) -> list[Planned]:
    """The replicates still to run: the top `top_k` finished trials by their single-seed value, each
    with `seeds` new training seeds, less those that already finished (a second `hpsearch replicate`
    only adds what is missing)."""
    column = f"best_{found.metric}"
    finished = trials[trials["status"].isin(FINISHED)] if not trials.empty else trials
    if finished.empty or column not in finished or finished[column].isna().all():
        raise ReplicateError(f"search {found.search_id!r} has no completed trial to replicate")
    top = finished.dropna(subset=[column]).sort_values(column, ascending=found.mode == "min").head(top_k)
    done = set()
    if not runs.empty:
        done = {(of, int(seed)) for of, seed, status in zip(runs["of"], runs["seed"], runs["status"])
                if status in FINISHED}
    planned = []
    for _, row in top.iterrows():
        config = trial_config(found, row, client)
        params = client.get_run(row["run_id"]).data.params
        for seed in training_seeds(int(config.get("seed", 0)), seeds):
            if (row["trial"], seed) not in done:
                planned.append(Planned(str(row["trial"]), seed, config, dict(params)))
    return planned


def trial_config(found: query.Search, row: pd.Series, client, *, verb: str = "repeat") -> dict[str, Any]:
    """The TrainConfig a trial trained with, as its checkpoint recorded it (`config.json`)."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(row["run_id"], f"{tags.CHECKPOINT_ARTIFACT}/config.json", folder)
        except Exception as error:  # noqa: BLE001  (a trial without its checkpoint cannot be repeated exactly)
            raise ReplicateError(f"trial {row['trial']} of search {found.search_id!r} has no checkpoint "
                                 f"configuration to {verb} ({str(error).splitlines()[0]})") from None
        return json.loads(Path(path).read_text())


def run_planned(planned: list[Planned], *, spec, shared: dict[str, Any], found: query.Search, tracking_uri: str,
                storage_path: Path, role: str = ROLE) -> int:
    """Run `planned` as one Tune experiment on the Ray already started, as child runs of the search
    with `role` (replicate, or ablation); returns how many finished."""
    from ray import tune
    from ray.tune import CheckpointConfig, FailureConfig, RunConfig
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from hpsearch.platform.progress import LiveView
    from hpsearch.platform.search import _for_trials, _run_tuner
    from hpsearch.platform.trial import make_trainable

    search = spec.search
    tracker = tracking.TrialTracker(tracking_uri=tracking_uri, experiment=spec.tracking.experiment,
                                    search_id=found.search_id, metric=search.metric, epochs=spec.train.epochs,
                                    parent=(found.experiment_id, found.run_id), role=role)
    live_view = LiveView(metric=search.metric, mode=search.mode, planned=len(planned), epochs=spec.train.epochs,
                         backlog=tracker.backlog)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    tuner = tune.Tuner(
        make_trainable(_for_trials(shared), cpus=spec.resources.cpus, gpus=spec.resources.gpus),
        param_space={"replicate": tune.grid_search([item.as_tune_config() for item in planned])},
        tune_config=tune.TuneConfig(
            metric=search.metric, mode=search.mode, reuse_actors=True,
            search_alg=BasicVariantGenerator(max_concurrent=search.max_concurrent),
            trial_dirname_creator=lambda trial: trial.trial_id),
        run_config=RunConfig(
            name=f"{found.search_id}-{role}s-{stamp}", storage_path=str(storage_path), verbose=0,
            callbacks=[tracker, live_view], stop=tracking.TrackingGuard(tracker),
            checkpoint_config=CheckpointConfig(num_to_keep=None, checkpoint_at_end=False),  # as the search keeps them
            failure_config=FailureConfig(max_failures=search.max_failures)))
    return _run_tuner(tuner)


def finished_search(search: str, tracking_uri: str | None, *, verb: str):
    """(uri, the search, a client, its spec, its trials) of a search that has ended, for a command
    that trains more runs of it (`verb` it: replicate, ablate)."""
    import yaml

    from hpsearch.search_spaces.spec import validate_spec

    uri = tags.credentials_to_environment(query.resolve_uri(tracking_uri))
    found = query.find_search(search, uri)
    if found.status == "running":
        raise ReplicateError(f"search {found.search_id!r} is still running; {verb} it once it has finished")
    client = tracking.client_for(uri)
    spec = validate_spec(yaml.safe_load(Path(client.download_artifacts(found.run_id, tags.SPEC_ARTIFACT)).read_text()),
                         base_dir=found.spec_dir)
    return uri, found, client, spec, query.trials(found, uri)


def replicate_search(search: str, *, tracking_uri: str | None = None, top_k: int = 3, seeds: int = 5,
                     address: str | None = None, storage: str | Path | None = None,
                     num_cpus: int | None = None) -> dict[str, Any]:
    """`hpsearch replicate`: replicates of a finished search's top configurations; returns its summary."""
    from hpsearch.platform.search import DEFAULT_STORAGE, _shared, init_ray, print_replicates, where_it_runs

    uri, found, client, spec, trials = finished_search(search, tracking_uri, verb="replicate")
    todo = plan(found, trials, replicate_runs(found, uri), top_k=top_k, seeds=seeds, client=client)
    if todo:
        recorded = tracking.recorded_data(client, found.run_id) if spec.dataset.is_image_source else None
        shared = _shared(spec, recorded)
        configurations = len({item.of for item in todo})
        print(f"replicating search {found.search_id}: {len(todo)} run{'s' if len(todo) != 1 else ''} ({configurations} configuration"
              f"{'s' if configurations != 1 else ''}, new training seeds, data split fixed), "
              f"{spec.search.max_concurrent} at a time {where_it_runs(address)}", flush=True)
        storage_path = Path(storage or DEFAULT_STORAGE).expanduser().resolve()
        init_ray(address, num_cpus=num_cpus)
        run_planned(todo, spec=spec, shared=shared, found=found, tracking_uri=uri, storage_path=storage_path)
    else:
        print(f"search {found.search_id}: the top {top_k} configurations already have {seeds} finished replicates "
              f"each; nothing to run", flush=True)
    result = summary(found, uri, trials)
    print_replicates(result, found=found)
    return result
