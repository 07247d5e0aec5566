"""Ablation: what each training technique of a configuration bought on this data.

A configuration (a search's winner by default) is trained once with everything on and once with
each of its active techniques switched off in turn, over several training seeds (the data split
stays fixed), in parallel on Ray, as child runs of the search tagged `hpsearch.role=ablation`.
Runs are paired by seed: a technique's effect on one seed is the metric with everything on less
the metric with it off (turned so that a positive effect always means the technique helped, for a
metric to minimize too). Each technique then has its mean effect with a 95% confidence interval
(Student's t over the seeds' paired differences) and the number of seeds whose difference has the
mean's sign: a technique whose interval holds zero is not shown to matter on this data.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from hpsearch.platform import query, tracking
from hpsearch.platform.replicates import (FINISHED, Planned, ReplicateError, child_runs, finished_search, interval,
                                         run_planned, trial_config, training_seeds)
from hpsearch.platform.tracking import tags

ROLE = "ablation"
ALL_ON = "none"  # the ablation tag of the runs with every technique on
_TIE = 1e-12  # differences of metrics this small are rounding, not effects
EFFECT_COLUMNS = ["technique", "switched_off", "seeds", "effect", "ci_low", "ci_high", "agree", "all_on", "off",
                  "run_ids"]


@dataclass(frozen=True)
class Technique:
    """One technique a configuration can use: when it is on, and the settings that switch it off."""

    name: str
    fields: tuple[str, ...]  # the TrainConfig fields it reads
    active: Callable[[dict[str, Any]], bool]
    off: dict[str, Any]  # the settings with it switched off (each field's default)


def _positive(field: str) -> Callable[[dict[str, Any]], bool]:
    return lambda config: float(config.get(field) or 0) > 0


TECHNIQUES = (
    Technique("augmentation", ("augment", "repeated_augment"),
              lambda config: config.get("augment", "none") != "none" or int(config.get("repeated_augment") or 1) > 1,
              {"augment": "none", "repeated_augment": 1}),
    Technique("random_erasing", ("random_erasing",), _positive("random_erasing"), {"random_erasing": 0.0}),
    Technique("mixup", ("mixup_alpha",), _positive("mixup_alpha"), {"mixup_alpha": 0.0}),
    Technique("cutmix", ("cutmix_alpha",), _positive("cutmix_alpha"), {"cutmix_alpha": 0.0}),
    Technique("label_smoothing", ("label_smoothing",), _positive("label_smoothing"), {"label_smoothing": 0.0}),
    Technique("ema", ("ema_decay",), _positive("ema_decay"), {"ema_decay": 0.0}),
    Technique("weight_decay", ("weight_decay",), _positive("weight_decay"), {"weight_decay": 0.0}),
    Technique("dropout", ("dropout",), _positive("dropout"), {"dropout": 0.0}),
    Technique("pruning", ("prune_amount",), _positive("prune_amount"), {"prune_amount": 0.0}),
    Technique("warmup", ("warmup_epochs",), _positive("warmup_epochs"), {"warmup_epochs": 0.0}),
)
TECHNIQUE_NAMES = tuple(technique.name for technique in TECHNIQUES)


def active_techniques(config: dict[str, Any]) -> list[Technique]:
    """The techniques `config` (a TrainConfig as a dict) has on, in TECHNIQUES' order."""
    return [technique for technique in TECHNIQUES if technique.active(config)]


def switched_off(config: dict[str, Any], technique: Technique) -> dict[str, Any]:
    """`config` with `technique` off: only the fields it has are set, so a config written before a
    field existed keeps its shape."""
    return {**config, **{field: value for field, value in technique.off.items() if field in config}}


def describe_off(config: dict[str, Any], technique: Technique) -> str:
    """`mixup_alpha 0.2 -> 0.0`, the settings the ablation changes."""
    return ", ".join(f"{field} {config[field]} -> {value}" for field, value in technique.off.items()
                     if field in config and config[field] != value)


# ------------------------------------------------------------------------------------------------ reading them

def ablation_runs(found: query.Search, tracking_uri: str) -> pd.DataFrame:
    """One row per ablation run of `found`: of (the trial whose configuration it trains), technique
    (switched off; ALL_ON for none), seed, status, value (its best metric), run_id."""
    frame = child_runs(found, tracking_uri, ROLE)
    columns = ["of", "technique", "seed", "status", "value", "run_id", "start_time"]
    needed = [f"tags.{tags.REPLICATE_OF}", f"tags.{tags.REPLICATE_SEED}", f"tags.{tags.ABLATION}"]
    if frame.empty or any(column not in frame for column in needed):
        return pd.DataFrame(columns=columns)
    frame = frame.dropna(subset=needed)  # a run that failed before it started says nothing
    metric = f"metrics.best_{found.metric}"
    return pd.DataFrame({
        "of": frame[f"tags.{tags.REPLICATE_OF}"].astype(str),
        "technique": frame[f"tags.{tags.ABLATION}"].astype(str),
        "seed": pd.to_numeric(frame[f"tags.{tags.REPLICATE_SEED}"]).astype(int),
        "status": frame.get(f"tags.{tags.STATUS}", pd.Series("unknown", index=frame.index)),
        "value": pd.to_numeric(frame[metric]) if metric in frame else float("nan"),
        "run_id": frame["run_id"],
        "start_time": frame["start_time"],
    }, columns=columns).sort_values(["of", "technique", "seed"], ignore_index=True)


def effects(runs: pd.DataFrame, *, mode: str, of: str | None = None) -> pd.DataFrame:
    """Per technique, most valuable first: the mean paired effect of having it on (positive: it
    helped), its 95% interval, the seeds paired, how many of them agree with the mean's sign, and the
    mean metric with everything on and with it off. `of`: the configuration (default: the one ablated
    last)."""
    done = runs[runs["status"].isin(FINISHED) & runs["value"].notna()] if not runs.empty else runs
    if done.empty:
        return pd.DataFrame(columns=EFFECT_COLUMNS)
    done = done[done["of"] == (of if of is not None else latest_ablated(done))]
    full = {int(seed): float(value) for seed, value in zip(*(done.loc[done["technique"] == ALL_ON, c]
                                                              for c in ("seed", "value")))}
    sign = 1.0 if mode == "max" else -1.0
    rows = []
    for technique, group in done[done["technique"] != ALL_ON].groupby("technique", sort=False):
        paired = [(int(seed), float(value)) for seed, value in zip(group["seed"], group["value"]) if int(seed) in full]
        if not paired:
            continue
        differences = [sign * (full[seed] - value) for seed, value in paired]
        mean = sum(differences) / len(differences)
        low, high = interval(differences)
        direction = 0 if abs(mean) <= _TIE else (1 if mean > 0 else -1)  # no effect: no seed agrees with it
        agree = sum(1 for difference in differences if abs(difference) > _TIE and (difference > 0) == (direction > 0)
                    ) if direction else 0
        rows.append({"technique": technique, "switched_off": "", "seeds": len(differences), "effect": mean,
                     "ci_low": low, "ci_high": high, "agree": agree,
                     "all_on": sum(full[seed] for seed, _ in paired) / len(paired),
                     "off": sum(value for _, value in paired) / len(paired),
                     "run_ids": group["run_id"].tolist()})
    table = pd.DataFrame(rows, columns=EFFECT_COLUMNS)
    return table.sort_values("effect", ascending=False, ignore_index=True)


def latest_ablated(runs: pd.DataFrame) -> str:
    """The configuration ablated last: that of the run started last (start_time, where the runs have it)."""
    if "start_time" in runs and runs["start_time"].notna().any():
        return str(runs.loc[runs["start_time"].idxmax(), "of"])
    return str(runs.iloc[-1]["of"])


def summary(found: query.Search, tracking_uri: str) -> dict[str, Any] | None:
    """The ablation of a search as `hpsearch ablate` prints it; None when it has none."""
    runs = ablation_runs(found, tracking_uri)
    if runs.empty:
        return None
    done = runs[runs["status"].isin(FINISHED)]
    of = latest_ablated(done if not done.empty else runs)
    table = effects(runs, mode=found.mode, of=of)
    return {"of": of, "table": table, "runs": runs[runs["of"] == of], "metric": found.metric}


def format_effects(table: pd.DataFrame, *, metric: str) -> str:
    """The effects as a text table."""
    if table.empty:
        return "(no finished ablation runs)"

    def number(value: float) -> str:
        return "-" if value != value else f"{value:+.4f}"

    shown = pd.DataFrame({
        "technique": table["technique"],
        f"effect on {metric}": table["effect"].map(number),
        "95% interval": [("-" if low != low else f"[{low:+.4f}, {high:+.4f}]")
                         for low, high in zip(table["ci_low"], table["ci_high"])],
        "seeds agreeing": [f"{agree} of {seeds}" for agree, seeds in zip(table["agree"], table["seeds"])],
        "all on": table["all_on"].map("{:.4f}".format),
        "switched off": table["off"].map("{:.4f}".format),
    })
    return shown.to_string(index=False)


def verdict(table: pd.DataFrame) -> str:
    """Which techniques the seeds show to matter: an interval wholly above or below zero."""
    if table.empty:
        return "no technique has finished ablation runs"
    helped = [row["technique"] for _, row in table.iterrows() if row["ci_low"] == row["ci_low"] and row["ci_low"] > 0]
    hurt = [row["technique"] for _, row in table.iterrows() if row["ci_high"] == row["ci_high"] and row["ci_high"] < 0]
    unclear = [row["technique"] for _, row in table.iterrows() if row["technique"] not in helped + hurt]
    parts = []
    if helped:
        parts.append(f"helped on every reading of these seeds: {', '.join(helped)}")
    if hurt:
        parts.append(f"hurt: {', '.join(hurt)}")
    if unclear:
        parts.append(f"not shown to matter (the 95% interval holds zero): {', '.join(unclear)}")
    return "; ".join(parts)


# ------------------------------------------------------------------------------------------------ running them

def plan(found: query.Search, trial: dict[str, Any], config: dict[str, Any], runs: pd.DataFrame, *,
         seeds: int, params: dict[str, str]) -> list[Planned]:
    """The ablation runs still to run for `trial`'s `config`: everything on, and each active technique
    off, with `seeds` training seeds each, less those that already finished."""
    techniques = active_techniques(config)
    if not techniques:
        raise ReplicateError(f"trial {trial['trial']} of search {found.search_id!r} uses none of the techniques an "
                             f"ablation switches off ({', '.join(TECHNIQUE_NAMES)}); nothing to ablate")
    done = set()
    if not runs.empty:
        done = {(technique, int(seed)) for of, technique, seed, status in
                zip(runs["of"], runs["technique"], runs["seed"], runs["status"])
                if of == trial["trial"] and status in FINISHED}
    variants = [(ALL_ON, config)] + [(technique.name, switched_off(config, technique)) for technique in techniques]
    planned = []
    for seed in training_seeds(int(config.get("seed", 0)), seeds):
        for name, variant in variants:
            if (name, seed) not in done:
                # The run's params: the trial's, with the settings this variant switched off
                changed = {field: str(value) for field, value in variant.items() if value != config.get(field)}
                planned.append(Planned(str(trial["trial"]), seed, variant, {**params, **changed}, variant=name))
    return planned


def ablate_search(search: str, *, trial: str | None = None, seeds: int = 3, tracking_uri: str | None = None,
                  address: str | None = None, storage: str | Path | None = None,
                  num_cpus: int | None = None) -> dict[str, Any]:
    """`hpsearch ablate`: each active technique of a configuration switched off in turn, over
    `seeds` training seeds; returns the summary (see `summary`)."""
    from hpsearch.platform.search import DEFAULT_STORAGE, _shared, init_ray, where_it_runs

    uri, found, client, spec, trials = finished_search(search, tracking_uri, verb="ablate")
    if trial is None:
        chosen = query.best_of(found, trials, replicated=_replicated(found, uri, trials))["trial"]
    else:
        chosen = trial.removeprefix("trial_")
        if trials.empty or not (trials["trial"] == chosen).any():
            known = ", ".join(trials["trial"].astype(str).tolist()[:10]) if not trials.empty else "none"
            raise ReplicateError(f"--trial: search {found.search_id!r} has no trial {trial!r}; its trials: {known}")
    row = trials.loc[trials["trial"] == chosen].iloc[0]
    if row["status"] not in FINISHED:
        raise ReplicateError(f"--trial: trial {chosen} of search {found.search_id!r} is {row['status']}; "
                             f"ablate a trial that finished")
    config = trial_config(found, row, client, verb="train again")
    params = dict(client.get_run(row["run_id"]).data.params)
    todo = plan(found, row, config, ablation_runs(found, uri), seeds=seeds, params=params)
    if todo:
        recorded = tracking.recorded_data(client, found.run_id) if spec.dataset.is_image_source else None
        shared = _shared(spec, recorded)
        techniques = [technique for technique in active_techniques(config)]
        print(f"ablating trial {chosen} of search {found.search_id}: {len(todo)} run{'s' if len(todo) != 1 else ''} "
              f"(everything on, and each of {len(techniques)} technique{'s' if len(techniques) != 1 else ''} off: "
              f"{'; '.join(f'{t.name} ({describe_off(config, t)})' for t in techniques)}; "
              f"{seeds} training seeds, data split fixed), {spec.search.max_concurrent} at a time "
              f"{where_it_runs(address)}", flush=True)
        storage_path = Path(storage or DEFAULT_STORAGE).expanduser().resolve()
        init_ray(address, num_cpus=num_cpus)
        run_planned(todo, spec=spec, shared=shared, found=found, tracking_uri=uri, storage_path=storage_path,
                    role=ROLE)
    else:
        print(f"search {found.search_id}: trial {chosen}'s ablation already has {seeds} finished seeds for everything "
              f"on and each technique off; nothing to run", flush=True)
    result = summary(found, uri) or {"of": chosen, "table": pd.DataFrame(columns=EFFECT_COLUMNS),
                                     "runs": pd.DataFrame(), "metric": found.metric}
    print_effects(result, found=found)
    return result


def print_effects(result: dict[str, Any], *, found: query.Search) -> None:
    sense = "higher" if found.mode == "max" else "lower"
    print(f"\nablation of trial {result['of']}: each technique's effect on best {found.metric} (everything on less it "
          f"off, paired by seed; positive: it made {found.metric} {sense}), most valuable first:\n"
          f"{format_effects(result['table'], metric=found.metric)}\n{verdict(result['table'])}", flush=True)


def _replicated(found: query.Search, uri: str, trials: pd.DataFrame) -> dict[str, Any] | None:
    from hpsearch.platform import replicates

    return replicates.summary(found, uri, trials)
