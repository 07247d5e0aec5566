"""Running a search: the spec becomes a Ray Tune Tuner with hpsearch's tracking and live view."""
from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hpsearch.platform import _ray_env  # noqa: F401  (before ray)
from hpsearch.platform import compat
from hpsearch.platform import query, tracking
from hpsearch.platform.errors import first_line
from hpsearch.platform.progress import LiveView, format_config, summary_table
from hpsearch.platform.tracking import tags
from hpsearch.platform.tune_space import make_optuna_searcher, to_ray
from hpsearch.search_spaces.spec import IMAGE_DATASET_FIELDS, Spec, dump_spec, validate_spec
from hpsearch.platform.tracking.store import sqlite_location_problem
from hpsearch.platform.tracking.tags import credentials_to_environment, redact_uri

DEFAULT_STORAGE = "hpsearch_results"  # Tune's experiment state and checkpoints, under the working directory


@dataclass(frozen=True)
class SearchOutcome:
    search_id: str
    parent_run_id: str
    tracking_uri: str
    status: str
    counts: dict[str, int]
    best: dict[str, Any] | None


def planned_trials(spec: Spec) -> int | None:
    """The trials a search asks for: the most it runs; None when a time budget alone decides."""
    return spec.trial_count()


def describe_trials(spec: Spec) -> str:
    """`12 trials`, `up to 12 trials within 30m`, `as many trials as fit in 30m`: for the first line."""
    from hpsearch.platform.time_budget import format_duration

    planned, budget = planned_trials(spec), spec.search.time_budget
    if budget is None:
        trials = f"{planned} trials"
    elif planned is None:
        trials = f"as many trials as fit in {format_duration(budget)}"
    else:
        trials = f"up to {planned} trials within {format_duration(budget)}"
    replicates = spec.search.replicates
    if replicates is None:
        return trials
    return f"{trials}, then the top {replicates.top_k} replicated with {replicates.seeds} new seeds each"


def init_ray(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Attach to a cluster at `address`, or start a local Ray on 127.0.0.1 only."""
    import ray

    compat.quiet_ray_logs()
    if ray.is_initialized():
        return
    address = ray_address(address)
    if address:
        ray.init(address=address, runtime_env={"env_vars": dict(_ray_env.WORKER_ENV)},
                 logging_level=logging.WARNING, log_to_driver=False)
    else:
        # A session of its own even when a Ray cluster runs on this machine (`ray start --head`):
        # without an address, ray.init would attach to that one. The workers inherit this process's
        # environment, and the first ones start with the trial modules already imported (compat).
        # On 127.0.0.1 only (Ray has no authentication): see compat.local_init_options.
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=False, **compat.local_init_options(_ray_env.WORKER_ENV))
        compat.started_local_session()


def ray_address(address: str | None = None) -> str | None:
    """The cluster a search attaches to: --address, else $RAY_ADDRESS (Ray Jobs sets it for a submitted
    search); None for a local session of its own."""
    return address or os.environ.get("RAY_ADDRESS") or None


def where_it_runs(address: str | None) -> str:
    """For the first line of output: which Ray the search runs on."""
    address = ray_address(address)
    return f"on the Ray cluster at {address}" if address else "on a local Ray of its own (127.0.0.1)"


def run_search(spec: Spec, *, address: str | None = None, storage: str | Path | None = None,
               num_cpus: int | None = None) -> SearchOutcome:
    """Run `spec` to the end, printing a live view and a summary; returns where the results are."""
    # From here on the URI carries no password: MLflow reads it from the environment instead, and
    # nothing printed, logged, stored in MLflow or pickled into Tune's experiment state can leak it.
    uri = credentials_to_environment(tags.resolve_uri(spec.tracking.uri))
    shown = _redacted(spec)
    # Unique even for two searches of one spec started in the same second.
    search_id = f"{spec.name}-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
    storage_path = Path(storage or DEFAULT_STORAGE).expanduser().resolve()
    planned = planned_trials(spec)
    problem = sqlite_location_problem(uri)
    if problem:  # told plainly, before MLflow would say it in its own words
        raise tracking.TrackingUnavailable(f"cannot use the MLflow tracking store {redact_uri(uri)}: {problem}")
    shared = _shared(spec)  # a dataset that cannot be read stops the search before anything is written
    print(f"search {search_id}: {describe_trials(spec)}, {spec.search.algorithm} search over "
          f"{spec.dataset.shown_name}, {spec.search.max_concurrent} at a time {where_it_runs(address)}; "
          f"tracking in {redact_uri(uri)}", flush=True)
    if "plan" in shared:
        print(describe_data(spec, shared), flush=True)

    # Before Ray starts: a store that cannot be written stops the search before anything runs.
    # (Overlapping this with Ray's start-up was tried: on 2 cores the schema migration of a new
    # SQLite store then slows the trial actors' start by more than it saves.)
    try:
        client = tracking.client_for(uri)
        experiment_id = tracking.experiment_id_for(client, spec.tracking.experiment)
        parent_run_id = tracking.start_search_run(
            client, experiment_id=experiment_id, spec=shown, search_id=search_id,
            experiment_path=str(storage_path / search_id), spec_yaml=dump_spec(shown), planned_trials=planned or 0,
            spec_dir=spec.spec_dir, data=shared.get("plan"))
    except Exception as error:  # noqa: BLE001  (any failure of the store is reported the same way)
        raise tracking.TrackingUnavailable(
            f"cannot use the MLflow tracking store {redact_uri(uri)}: {first_line(error)}") from None
    with tracking.Heartbeat(uri, parent_run_id):
        init_ray(address, num_cpus=num_cpus)
        tuner = _build_tuner(spec, shared, search_id=search_id, storage_path=storage_path, tracking_uri=uri,
                             planned=planned, parent=(experiment_id, parent_run_id))
        finished = _run_tuner(tuner)
        return _finish(finished, spec=spec, shared=shared, search_id=search_id, parent_run_id=parent_run_id,
                       tracking_uri=uri, local=ray_address(address) is None, storage_path=storage_path)


def resume_search(search: str, *, tracking_uri: str | None = None, address: str | None = None,
                  num_cpus: int | None = None) -> SearchOutcome:
    """Finish an interrupted search from Tune's experiment state; trials continue their own runs."""
    from ray import tune

    uri = credentials_to_environment(query.resolve_uri(tracking_uri))
    found = query.find_search(search, uri)
    client = tracking.client_for(uri)
    spec_text = client.download_artifacts(found.run_id, tracking.SPEC_ARTIFACT)
    import yaml

    spec = validate_spec(yaml.safe_load(Path(spec_text).read_text()), base_dir=found.spec_dir)
    recorded = tracking.recorded_data(client, found.run_id) if spec.dataset.is_image_source else None
    shared = _shared(spec, recorded)  # data that changed or went away stops here, before anything is reopened
    if not tune.Tuner.can_restore(found.experiment_path):
        raise query.SearchNotFound(f"search {found.search_id!r} has no experiment state at "
                                   f"{found.experiment_path}; it cannot be resumed")
    print(f"resuming search {found.search_id} from {found.experiment_path} {where_it_runs(address)}", flush=True)
    tracking.reopen_search_run(client, found.run_id)
    from hpsearch.platform.trial import make_trainable

    with tracking.Heartbeat(uri, found.run_id):
        init_ray(address, num_cpus=num_cpus)
        tuner = tune.Tuner.restore(found.experiment_path, trainable=make_trainable(
            _for_trials(shared), cpus=spec.resources.cpus, gpus=spec.resources.gpus),
            resume_unfinished=True, resume_errored=True)
        return _finish(_run_tuner(tuner), spec=spec, shared=shared, search_id=found.search_id,
                       parent_run_id=found.run_id, tracking_uri=uri, local=ray_address(address) is None,
                       storage_path=Path(found.experiment_path).parent)


def _redacted(spec: Spec) -> Spec:
    """The spec as it is shown and stored: no password in tracking.uri."""
    if spec.tracking.uri is None:
        return spec
    tracking_spec = spec.tracking.model_copy(update={"uri": redact_uri(spec.tracking.uri)})
    return spec.model_copy(update={"tracking": tracking_spec})


def _shared(spec: Spec, recorded: dict[str, Any] | None = None) -> dict[str, Any]:
    """What every trial of the search needs besides its own parameters.

    For an ImageFolder or plug-in dataset, decided here once (`plan`, recorded on the parent run):
    whether it is held in memory, and its normalization statistics; a resumed search keeps what it
    `recorded`. Raises DataError or PluginError for a dataset that cannot be read.
    """
    dataset = spec.dataset.model_dump()
    if dataset["root"] is not None:
        dataset["root"] = str(Path(dataset["root"]).expanduser().resolve())
    import torch

    shared = {"dataset": dataset, "train": spec.train.model_dump(), "metric": spec.search.metric,
              "mode": spec.search.mode, "cpus": spec.resources.cpus, "plugin_paths": tuple(spec.plugin_paths),
              "constraints": list(spec.search.constraints),
              # Where validate found the pretrained weights: trials read them there too, where it exists.
              "hub_dir": torch.hub.get_dir()}
    if not spec.dataset.is_image_source:
        for key in ("factory", "args", *IMAGE_DATASET_FIELDS):
            dataset.pop(key, None)
        return shared
    from hpsearch.trainables.plugins import add_paths
    from hpsearch.trainables.sources import plan_source

    if dataset["workers"] is None:
        dataset["workers"] = max(0, int(spec.resources.cpus) - 1)
    add_paths(spec.plugin_paths)
    if recorded:  # resumed: its trials go on normalizing as they began
        dataset.update(mean=recorded["mean"], std=recorded["std"], in_memory=recorded["in_memory"])
    plan = plan_source(dataset.pop("name"), dataset)
    if recorded and (recorded["sizes"], recorded["classes"]) != (plan["sizes"], plan["classes"]):
        from hpsearch.trainables.images import DataError

        then, now = (f"{sum(found['sizes'].values()):,} images in {len(found['classes'])} classes"
                     for found in (recorded, plan))
        raise DataError(f"the dataset changed since the search began ({then} then, {now} now): its trials "
                        f"would go on with other splits; start a new search")
    dataset.update(name=spec.dataset.name, mean=plan["mean"], std=plan["std"], in_memory=plan["in_memory"])
    if spec.dataset.factory is None:  # every header was read here: trials leave out the same files, unread
        dataset.update(check_headers=False, exclude=plan["skipped_files"])
    shared["plan"] = plan
    return shared


def describe_data(spec: Spec, shared: dict[str, Any]) -> str:
    """One line on an ImageFolder or plug-in dataset, as the search will use it."""
    plan, dataset = shared["plan"], shared["dataset"]
    sizes = plan["sizes"]
    shape = "x".join(str(size) for size in plan["shape"])
    where = (f"in memory ({plan['decoded_bytes'] / 2**20:,.1f} MB decoded per trial)" if plan["in_memory"] else
             f"streamed from disk by {dataset['workers']} loader process{'es' if dataset['workers'] != 1 else ''} "
             f"per trial")
    skipped = f"; {plan['skipped']} unreadable files skipped" if plan["skipped"] else ""
    mean = ", ".join(f"{value:.1f}" for value in plan["mean"])
    std = ", ".join(f"{value:.1f}" for value in plan["std"])
    return (f"data: {sum(sizes.values()):,} {shape} images in {len(plan['classes'])} classes "
            f"({sizes['train']:,} train, {sizes['val']:,} val, {sizes['test']:,} test), {where}; "
            f"normalized by mean ({mean}) and std ({std}){skipped}")


def _build_tuner(spec: Spec, shared: dict[str, Any], *, search_id: str, storage_path: Path, tracking_uri: str,
                 planned: int | None, parent: tuple[str, str]):
    from ray import tune
    from ray.tune import CheckpointConfig, FailureConfig, RunConfig
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.basic_variant import BasicVariantGenerator
    from ray.tune.stopper import CombinedStopper

    from hpsearch.platform.time_budget import TimeBudget
    from hpsearch.platform.trial import make_trainable

    search = spec.search
    if search.algorithm == "optuna":
        search_alg = ConcurrencyLimiter(
            make_optuna_searcher(spec.space, metric=search.metric, mode=search.mode, seed=search.seed,
                                 objectives=[(o.metric, o.mode) for o in search.objectives or ()],
                                 constraints=search.constraints),
            max_concurrent=search.max_concurrent)
        param_space = None
    else:
        search_alg = BasicVariantGenerator(random_state=search.seed, max_concurrent=search.max_concurrent)
        param_space = to_ray(spec.space, search.algorithm)
    scheduler = None
    if search.scheduler.name == "asha":
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=spec.train.epochs,
                                  grace_period=min(search.scheduler.grace_period, spec.train.epochs),
                                  reduction_factor=search.scheduler.reduction_factor)
    tracker = tracking.TrialTracker(tracking_uri=tracking_uri, experiment=spec.tracking.experiment,
                                    search_id=search_id, metric=search.metric, epochs=spec.train.epochs,
                                    parent=parent)
    # Under a time budget the live view shows the most the search may run ("?": as many as fit).
    shown_planned = planned if planned is not None else "?"  # "?": as many as fit in the time budget
    live_view = LiveView(metric=search.metric, mode=search.mode, planned=shown_planned, epochs=spec.train.epochs,
                         backlog=tracker.backlog, objectives=[(o.metric, o.mode) for o in search.objectives or ()])
    callbacks, stop = [tracker, live_view], tracking.TrackingGuard(tracker)
    if search.time_budget is not None:
        budget = TimeBudget(search.time_budget, enders=[tracker, live_view])
        callbacks, stop = [budget, *callbacks], CombinedStopper(stop, budget)
    return tune.Tuner(
        make_trainable(_for_trials(shared), cpus=spec.resources.cpus, gpus=spec.resources.gpus),
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=search.metric, mode=search.mode, search_alg=search_alg, scheduler=scheduler,
            num_samples=search.num_samples or -1, reuse_actors=True,  # -1: until the time budget is spent
            trial_dirname_creator=lambda trial: trial.trial_id),
        run_config=RunConfig(
            name=search_id, storage_path=str(storage_path), callbacks=callbacks, verbose=0, stop=stop,
            # Trials checkpoint only when they improve, so the latest checkpoint is the best one: no
            # checkpoint at the end (Tune's default for class trainables would save the last epoch).
            # Keeping them all means no forced experiment snapshot per checkpoint.
            checkpoint_config=CheckpointConfig(num_to_keep=None, checkpoint_at_end=False),
            failure_config=FailureConfig(max_failures=search.max_failures)),
    )


def _for_trials(shared: dict[str, Any]) -> dict[str, Any]:
    """What goes to every trial: the plan is the driver's record, not the trials' business."""
    return {key: value for key, value in shared.items() if key != "plan"}


def _run_tuner(tuner) -> int:
    """Run the search; returns how many trials finished (-1 when a second Ctrl-C cut Tune short)."""
    compat.keep_starting_actors()
    try:
        results = tuner.fit()
    except KeyboardInterrupt:
        return -1
    return results.num_terminated + results.num_errors


def _finish(finished: int, *, spec: Spec, shared: dict[str, Any], search_id: str, parent_run_id: str,
            tracking_uri: str, local: bool, storage_path: Path) -> SearchOutcome:
    """Close the search's parent run and print the summary."""
    client = tracking.client_for(tracking_uri)
    found = query.find_search(parent_run_id, tracking_uri)
    table = query.trials(found, tracking_uri)
    counts = {status: int((table["status"] == status).sum())
              for status in ("completed", "stopped_early", "diverged", "infeasible", "failed")}
    metric = spec.search.metric
    # Tune stops gracefully on the first Ctrl-C (or `hpsearch stop`), and Ray 2.60 counts the trials it
    # cut short as terminated: the trials whose runs never ended say it too. A spent time budget ends
    # the trials it cut short itself (time_budget.py): fewer trials than asked for is then its end.
    planned = planned_trials(spec)
    if spec.search.time_budget is not None:
        interrupted = finished < 0 or bool((table["status"] == "running").any())
    else:
        interrupted = finished < planned or sum(counts.values()) < planned
    if interrupted:
        tracking.mark_interrupted(client, parent_run_id)
        tracking.write_final_snapshot(client, experiment_id=found.experiment_id, parent_run_id=parent_run_id)
        tracking.finish_search_run(client, parent_run_id, status="interrupted", best_value=None, metric=metric,
                                   counts=counts)
        print(f"\nsearch {search_id} interrupted ({sum(counts.values())} trials finished); finish it with:\n"
              f"  hpsearch resume {search_id}", flush=True)
        return SearchOutcome(search_id, parent_run_id, tracking_uri, "interrupted", counts, None)
    best = query.best_of(found, table) if counts["completed"] + counts["stopped_early"] else None
    status = "completed" if best is not None else "failed"
    replicated = None
    if best is not None and spec.search.replicates is not None:
        replicated = _replicate(spec, shared, found, table, tracking_uri=tracking_uri, storage_path=storage_path)
        best = query.best_of(found, table, replicated=replicated)
    if best is not None:
        best["test"] = _evaluate_best(spec, shared, best, client, local=local)
    tracking.write_final_snapshot(client, experiment_id=found.experiment_id, parent_run_id=parent_run_id)
    tracking.finish_search_run(client, parent_run_id, status=status, metric=metric,
                               best_value=best["value"] if best else None, counts=counts)
    _print_summary(table, spec=spec, search_id=search_id, best=best, counts=counts, tracking_uri=tracking_uri,
                   replicated=replicated, found=found)
    return SearchOutcome(search_id, parent_run_id, tracking_uri, status, counts, best)


def _replicate(spec: Spec, shared: dict[str, Any], found: query.Search, table, *, tracking_uri: str,
               storage_path: Path) -> dict[str, Any] | None:
    """`search.replicates`: the top configurations again with new training seeds, before the winner is named."""
    from hpsearch.platform import replicates

    settings = spec.search.replicates
    client = tracking.client_for(tracking_uri)
    try:
        todo = replicates.plan(found, table, replicates.replicate_runs(found, tracking_uri), top_k=settings.top_k,
                               seeds=settings.seeds, client=client)
    except replicates.ReplicateError as error:
        print(f"no replicates: {error}", flush=True)
        return None
    if todo:
        configurations = len({item.of for item in todo})
        print(f"\nreplicating the top {configurations} configuration{'s' if configurations != 1 else ''}: "
              f"{len(todo)} runs with new training seeds (data split fixed), {spec.search.max_concurrent} at a time",
              flush=True)
        finished = replicates.run_planned(todo, spec=spec, shared=shared, found=found, tracking_uri=tracking_uri,
                                          storage_path=storage_path)
        if finished < len(todo):
            print(f"replicates interrupted ({max(finished, 0)} of {len(todo)} finished); add the rest with:\n"
                  f"  hpsearch replicate {found.search_id} --top-k {settings.top_k} --seeds {settings.seeds}",
                  flush=True)
    return replicates.summary(found, tracking_uri, table)


def print_front(found: query.Search, table, *, spec: Spec) -> None:
    """The trade-off: the feasible trials no other beats on every objective, and what was infeasible."""
    search = spec.search
    infeasible = table[table["status"] == "infeasible"] if not table.empty else table
    if search.constraints:
        before = int((infeasible["epochs"].fillna(0) == 0).sum()) if not infeasible.empty else 0
        print(f"\nconstraints {'; '.join(search.constraints)}: {len(infeasible)} of {len(table)} trials infeasible"
              f"{f', {before} of them ended before training' if before else ''}", flush=True)
    if not search.objectives:
        return
    front = query.pareto_of(found, table)
    names = " against ".join(f"{o.metric} ({o.mode})" for o in search.objectives)
    note = (f"; ASHA stopped trials on {search.metric}, the first objective"
            if search.scheduler.name == "asha" else "")
    print(f"\nPareto front, {names}: {len(front)} trial{'s' if len(front) != 1 else ''} no other feasible "
          f"trial beats on every objective{note}\n{query.format_front(front)}", flush=True)


def print_replicates(replicated: dict[str, Any] | None, *, found: query.Search) -> None:
    """Each replicated configuration's mean, std and 95% interval, whether they overlap, and the rule."""
    from hpsearch.platform import replicates

    if not replicated:
        return
    print(f"\nseed replicates, best {found.metric} of each run (the original trial's single seed apart):\n"
          f"{replicates.format_statistics(replicated['table'])}\n"
          f"{replicated['verdict']}\nthe winner is chosen by {replicated['rule']}", flush=True)


def describe_best(best: dict[str, Any]) -> str:
    """`trial 00003, val_accuracy 0.9712 at epoch 7`, or with replicates its mean and interval."""
    metric = best["metric"]
    if "mean" in best:
        return (f"trial {best['trial']}'s configuration, mean {metric} {best['mean']:.4f} over {best['seeds']} seeds "
                f"(95% interval [{best['ci'][0]:.4f}, {best['ci'][1]:.4f}]; its own run {best['value']:.4f} at "
                f"epoch {best['best_epoch']})")
    return f"trial {best['trial']}, {metric} {best['value']:.4f} at epoch {best['best_epoch']}"


def _evaluate_best(spec: Spec, shared: dict[str, Any], best: dict[str, Any], client, *,
                   local: bool) -> dict[str, float] | None:
    """One evaluation on the test split, for the best trial only: the test split selects nothing.

    A local search evaluates in this process, which has torch loaded already; on a cluster it is a
    Ray task, placed where Ray finds resources, like the trials were.
    """
    import tempfile

    import ray

    from hpsearch.platform.trial import evaluate_remote

    with tempfile.TemporaryDirectory() as folder:
        try:
            local = Path(client.download_artifacts(best["run_id"], tracking.CHECKPOINT_ARTIFACT, folder))
        except Exception as error:  # noqa: BLE001  (a search without checkpoints still has results)
            print(f"no test evaluation: the best trial's checkpoint could not be read ({error})", flush=True)
            return None
        config_json, model_bytes = (local / "config.json").read_text(), (local / "model.pt").read_bytes()
    arguments = (config_json, model_bytes, shared["dataset"], spec.resources.cpus)
    if local:
        import torch

        gpu = spec.resources.gpus > 0 and torch.cuda.is_available()
        evaluation = evaluate_remote(*arguments, device="cuda" if gpu else "cpu", plugin_paths=shared["plugin_paths"],
                                     hub_dir=shared["hub_dir"])
    else:
        task = ray.remote(num_cpus=spec.resources.cpus, num_gpus=spec.resources.gpus)(evaluate_remote)
        evaluation = ray.get(task.remote(*arguments, plugin_paths=shared["plugin_paths"], hub_dir=shared["hub_dir"]))
    tracking.log_test_evaluation(client, best["run_id"], metrics=evaluation.metrics, confusion=evaluation.confusion)
    return evaluation.metrics


def _print_summary(table, *, spec: Spec, search_id: str, best, counts, tracking_uri: str,
                   replicated: dict[str, Any] | None = None, found: query.Search | None = None) -> None:
    metric = spec.search.metric
    done = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in counts.items() if n)
    print(f"\nsearch {search_id} finished: {done or 'no trials'}\n")
    print(summary_table(table, metric=metric, mode=spec.search.mode))
    if found is not None and (spec.search.objectives or spec.search.constraints):
        print_front(found, table, spec=spec)
    if found is not None:
        print_replicates(replicated, found=found)
    if best:
        config = format_config(best["config"])
        print(f"\nbest: {describe_best(best)}\n      {config}")
        if best.get("test"):
            shown = ", ".join(f"{name} {value:.4f}" for name, value in best["test"].items())
            print(f"      on the test split, evaluated once: {shown}")
    shown_uri = redact_uri(tracking_uri)
    ui = f"mlflow ui --backend-store-uri {shown_uri}" if tracking_uri.startswith("sqlite") else shown_uri
    # Without --tracking-uri, the commands read what this search wrote to ($MLFLOW_TRACKING_URI or the default).
    store = "" if tracking_uri == tags.resolve_uri() else f" --tracking-uri {shown_uri}"
    front = (f"  hpsearch pareto {spec.name}{store}      # the trade-off: trials no other beats on every objective\n"
             if spec.search.objectives else "")
    print(f"\nresults: MLflow experiment {spec.tracking.experiment!r}, parent run {search_id}\n"
          f"  hpsearch trials {spec.name}{store}      # every trial as a table (--format csv|json)\n"
          f"  hpsearch best {spec.name}{store}        # the best configuration\n"
          f"{front}"
          f"  hpsearch dashboard{store}   # compare trials in a browser, at http://127.0.0.1:8050\n"
          f"  {ui}\n"
          f"  notebook: from hpsearch import query; query.trials({spec.name!r}"
          f"{f', tracking_uri={shown_uri!r}' if store else ''})", flush=True)
