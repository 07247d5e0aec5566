"""`hpsearch`: run, validate, resume and inspect searches."""
from __future__ import annotations

import argparse
import logging
import json
import os
import sys
from typing import Sequence

from hpsearch import __version__
from hpsearch.platform import defaults
from hpsearch.platform.errors import UsageError
from hpsearch.platform.tracking.tags import resolve_uri

USAGE_ERROR = 2
INTERRUPTED = 130  # as a shell reports a command ended by Ctrl-C




def main(argv: Sequence[str] | None = None) -> int:
    # MLflow announces every schema migration of a new SQLite store at INFO level.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if not hasattr(args, "spec") and hasattr(args, "tracking_uri"):  # a spec may name its own: see _load
            _check_tracking_uri(args)
            _check_server(args.tracking_uri)
        return args.handler(args) or 0
    except UsageError as error:
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:  # `hpsearch list models | head`: the reader has what it wanted
        sys.stderr.close()
        return 0
    except Exception as error:
        if not type(error).__module__.startswith("mlflow."):
            raise
        # A store that answers, but not as MLflow's (another web server at that address, a proxy's page).
        from hpsearch.platform.errors import first_line
        from hpsearch.platform.tracking.tags import redact_uri, resolve_uri

        uri = getattr(args, "tracking_uri", None)
        store = "" if hasattr(args, "spec") and not uri else f" at {redact_uri(resolve_uri(uri))}"  # the spec's own
        message = first_line(error).split(". Response body:")[0]
        print(f"error: the MLflow tracking store{store} failed: {message} (is it an MLflow tracking server?)",
              file=sys.stderr)
        return 1


def _check_tracking_uri(args) -> None:
    """A command that reads or writes the tracking store refuses a URI MLflow has no store for, from
    --tracking-uri or $MLFLOW_TRACKING_URI, before it does anything (a spec's own is checked with the spec)."""
    from hpsearch.search_spaces.spec import tracking_uri_problem

    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    problem = tracking_uri_problem(uri) if uri else None
    if problem:
        where = "--tracking-uri" if args.tracking_uri else "$MLFLOW_TRACKING_URI"
        raise UsageError([f"{where}: {problem}"])


def _check_server(tracking_uri: str | None) -> None:
    """A tracking server that does not answer fails the command at once, not after MLflow's minutes of retries."""
    from hpsearch.platform.tracking.server import unreachable
    from hpsearch.platform.tracking.tags import resolve_uri

    problem = unreachable(resolve_uri(tracking_uri))
    if problem:
        raise UsageError([problem])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpsearch", description="Hyperparameter search for image classifiers on Ray Tune, tracked in MLflow.",
        epilog="Start with: hpsearch run digits-quick")
    parser.add_argument("--version", action="version", version=f"hpsearch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    run = command("run", _run, "Run a search from a spec file or a built-in spec.")
    _spec_arguments(run)
    run.add_argument("--address", help="Ray cluster to attach to (default: a local Ray on 127.0.0.1 only)")
    run.add_argument("--storage", help="where Tune keeps experiment state and checkpoints "
                                       "(default: ./hpsearch_results; shared storage on a cluster)")

    validate = command("validate", _validate, "Check a spec and print it resolved, without running anything.")
    _spec_arguments(validate)

    listing = command("list", _list, "List the built-in specs, or a registry: models (torchvision's zoo included), "
                                     "optimizers, schedulers, augmentations, initializations, datasets. Plug-in models "
                                     "and datasets are named package.module:function.")
    listing.add_argument("what", nargs="?", default="specs",
                         choices=["specs", "models", "optimizers", "schedulers", "augmentations", "initializations",
                                  "datasets"])

    finalize = command("finalize", _finalize, "Retrain a search's best configuration on training + validation data, "
                                              "test it once, and register it in the MLflow Model Registry.")
    finalize.add_argument("search", help="search name (its latest search) or id")
    finalize.add_argument("--trial", help="the trial whose configuration to finalize (default: the best)")
    finalize.add_argument("--name", help="registered model name (default: the spec's name)")
    finalize.add_argument("--promote", action="store_true", help="also move the alias 'champion' to the new version")
    _tracking_uri_argument(finalize)
    finalize.add_argument("--address", help="Ray cluster to train on, as a Ray task with the search's resources "
                                            "(default: $RAY_ADDRESS, else in this process)")

    replicate = command("replicate", _replicate, "Train a finished search's top configurations again with new "
                                                 "training seeds, to see whether the winner's lead holds.")
    replicate.add_argument("search", help="search name (its latest search) or id")
    replicate.add_argument("--top-k", type=int, default=3, help="configurations to replicate, best first (default: 3)")
    replicate.add_argument("--seeds", type=int, default=5,
                           help="new training seeds per configuration (default: 5); replicates already run count")
    _tracking_uri_argument(replicate)
    replicate.add_argument("--address", help="Ray cluster to attach to (default: a local Ray on 127.0.0.1 only)")
    replicate.add_argument("--storage", help="where Tune keeps the replicates' state (default: ./hpsearch_results)")

    ablate = command("ablate", _ablate, "Train a finished search's configuration with each of its techniques "
                                        "(augmentation, random erasing, MixUp, CutMix, label smoothing, EMA, weight "
                                        "decay, dropout, pruning, warmup) switched off in turn, to see what each bought.")
    ablate.add_argument("search", help="search name (its latest search) or id")
    ablate.add_argument("--trial", help="the trial whose configuration to ablate (default: the winner)")
    ablate.add_argument("--seeds", type=int, default=3,
                        help="training seeds for everything on and for each technique off (default: 3); "
                             "ablation runs already finished count")
    _tracking_uri_argument(ablate)
    ablate.add_argument("--address", help="Ray cluster to attach to (default: a local Ray on 127.0.0.1 only)")
    ablate.add_argument("--storage", help="where Tune keeps the ablation's state (default: ./hpsearch_results)")

    predict = command("predict", _predict, "Classify image files (folders read recursively) with a finalized model.")
    predict.add_argument("model", help="models:/NAME@champion, models:/NAME/VERSION, runs:/ID/model, or a search "
                                       "name or id (its finalized model)")
    predict.add_argument("images", nargs="+", help="image files or folders")
    predict.add_argument("--format", choices=["table", "csv", "json"], default="table")
    predict.add_argument("--top-k", type=int, default=1, help="classes shown per image, most likely first")
    _tracking_uri_argument(predict)

    resume = command("resume", _resume, "Finish an interrupted search; trials continue their own MLflow runs.")
    resume.add_argument("search", help="search name (its latest search) or id")
    _tracking_uri_argument(resume)
    resume.add_argument("--address", help="Ray cluster to attach to (default: local Ray on 127.0.0.1)")

    lr_find = command("lr-find", _lr_find, "Run the learning-rate range test on a spec's first configuration.")
    _spec_arguments(lr_find)
    lr_find.add_argument("--out", default=None, help="folder for the plot and table (default: ./lr-find/<spec name>)")
    lr_find.add_argument("--steps", type=int, default=200, help="batches in the test (default: 200)")

    trials = command("trials", _trials, "Print a search's trials.")
    trials.add_argument("search", help="search name (its latest search) or id")
    trials.add_argument("--format", choices=["table", "csv", "json"], default="table")
    _tracking_uri_argument(trials)

    best = command("best", _best, "Print a search's best trial and its configuration.")
    best.add_argument("search", help="search name (its latest search) or id")
    best.add_argument("--format", choices=["text", "json"], default="text")
    _tracking_uri_argument(best)

    pareto = command("pareto", _pareto, "Print the Pareto front of a search with several objectives: the feasible "
                                        "trials no other beats on every objective.")
    pareto.add_argument("search", help="search name (its latest search) or id")
    pareto.add_argument("--format", choices=["table", "csv", "json"], default="table")
    _tracking_uri_argument(pareto)

    searches = command("searches", _searches, "List the searches in the tracking store, newest first.")
    _tracking_uri_argument(searches)

    dashboard = command("dashboard", _dashboard, "Serve the dashboard over the tracking store's searches (read-only).")
    _tracking_uri_argument(dashboard)
    dashboard.add_argument("--host", default=defaults.LOOPBACK,
                           help=f"interface to listen on (default: {defaults.LOOPBACK}, this machine only)")
    dashboard.add_argument("--port", type=int, default=defaults.DASHBOARD_PORT,
                           help=f"port (default: {defaults.DASHBOARD_PORT})")
    dashboard.add_argument("--refresh", type=float, default=5.0, metavar="SECONDS",
                           help="how often an open page fetches new and changed trials (default: 5)")
    dashboard.add_argument("--auth-user", metavar="NAME",
                           help="require HTTP basic auth as NAME, password from $HPSEARCH_DASHBOARD_PASSWORD "
                                "(use it when --host is not 127.0.0.1)")

    from hpsearch.platform.cluster import cli as cluster_cli

    cluster_cli.add_commands(command)
    return parser


def _tracking_uri_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")


def _spec_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="a YAML spec file, or a built-in spec name (see `hpsearch list`)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                        help="override a spec field, e.g. --set search.num_samples=4 (repeatable)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI; overrides the spec and $MLFLOW_TRACKING_URI")


def _load(args):
    from hpsearch.search_spaces.spec import SpecError, load_spec

    try:
        spec = load_spec(args.spec, overrides=args.overrides, tracking_uri=args.tracking_uri)
    except SpecError as error:
        raise UsageError(error.problems) from None
    if spec.tracking.uri is None:  # the store is $MLFLOW_TRACKING_URI's
        _check_tracking_uri(args)
    return spec


def _run(args) -> int:
    spec = _load(args)
    _check_server(spec.tracking.uri)
    if args.address:  # before Ray is imported: see _ray_env
        os.environ["RAY_ADDRESS"] = args.address
    from hpsearch.platform.search import run_search
    from hpsearch.platform.tracking import TrackingUnavailable

    from hpsearch.trainables.images import DataError
    from hpsearch.trainables.plugins import PluginError

    try:
        outcome = run_search(spec, address=args.address, storage=args.storage)
    except (TrackingUnavailable, DataError, PluginError) as error:
        raise UsageError([str(error)]) from None
    return _exit_status(outcome.status)


def _validate(args) -> int:
    spec = _load(args)
    from hpsearch.platform.search import describe_trials
    from hpsearch.search_spaces.spec import dump_spec

    print(dump_spec(spec), end="")
    if spec.dataset.is_image_source and spec.dataset.factory is None:
        scan = spec.dataset.scan()  # read once already, when the spec was checked: this is its cached scan
        layout = "train/ val/ test/ folders" if scan.layout == "folders" else "split with dataset.seed"
        skipped = f"; {len(scan.skipped)} unreadable files skipped" if scan.skipped else ""
        print(f"# data: {scan.images:,} images in {len(scan.classes)} classes ({len(scan.train):,} train, "
              f"{len(scan.val):,} val, {len(scan.test):,} test; {layout}){skipped}")
    search = spec.search
    if search.objectives:
        names = " against ".join(f"{o.metric} ({o.mode})" for o in search.objectives)
        how = "Optuna's multi-objective TPE" if search.algorithm == "optuna" else "the front computed from the trials"
        print(f"# objectives: {names}, {how}"
              + (f"; ASHA stops trials on {search.metric}, the first" if search.scheduler.name == "asha" else ""))
    if search.constraints:
        before = [c for c in search.constraint_list if c.before_training]
        print(f"# constraints: {'; '.join(search.constraints)}"
              + (f" ({len(before)} checked before a trial's first epoch)" if before else ""))
        for line in _drawn_costs_lines(spec):
            print(line)
    startup = _optuna_startup_note(spec)
    if startup:
        print(f"# note: {startup}")
    print(f"# ok: {describe_trials(spec)}, {spec.search.algorithm} search, tracking in {resolve_uri(spec.tracking.uri)}")
    return 0


def _drawn_costs_lines(spec) -> list[str]:
    """What the constraints known before training do to the space, seen on configurations drawn from it:
    the costs' ranges, and how many would end before they train (a note when all would)."""
    from hpsearch.search_spaces.objectives import SHAPE_COSTS
    from hpsearch.search_spaces.spec import drawn_costs

    static = [c for c in spec.search.constraint_list if c.metric in SHAPE_COSTS]
    costs = drawn_costs(spec) if static else None
    if not costs:
        return []
    metrics = list(dict.fromkeys(c.metric for c in static))
    ranges = ", ".join(f"{metric} {_amount(min(c[metric] for c in costs), metric)} to "
                       f"{_amount(max(c[metric] for c in costs), metric)}" for metric in metrics)
    broken = sum(any(not c.holds(cost[c.metric]) for c in static) for cost in costs)
    which = "a constraint" if len(static) > 1 else str(static[0])
    lines = [f"# costs of {len(costs)} configurations drawn from the space: {ranges}; {broken} of {len(costs)} "
             f"break {which} and would end before training"]
    if broken == len(costs):
        lines.append(f"# note: every configuration drawn breaks {which}, so most trials would train nothing: "
                     f"loosen {'the constraints' if len(static) > 1 else 'it'}, or search smaller models")
    return lines


def _amount(value: float, metric: str) -> str:
    if metric == "size_mb":
        return f"{value:.3g} MB"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= 10 * scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:,.0f}"


def _optuna_startup_note(spec) -> str | None:
    """Where an Optuna search is mostly the random trials its TPE starts with, what that means."""
    from hpsearch.search_spaces.space import OPTUNA_STARTUP_TRIALS

    samples = spec.search.num_samples
    if spec.search.algorithm != "optuna" or samples is None or samples >= 2 * OPTUNA_STARTUP_TRIALS:
        return None
    share = f"all {samples}" if samples <= OPTUNA_STARTUP_TRIALS else f"{OPTUNA_STARTUP_TRIALS} of these {samples}"
    return (f"Optuna's TPE draws its first {OPTUNA_STARTUP_TRIALS} trials at random, so {share} are random search; "
            f"with search.num_samples {2 * OPTUNA_STARTUP_TRIALS} or more TPE chooses most of them")


def _list(args) -> int:
    if args.what == "specs":
        from hpsearch.search_spaces.spec import builtin_specs

        names = builtin_specs()
    else:
        from hpsearch import trainables

        names = {"models": trainables.MODELS, "optimizers": trainables.OPTIMIZERS,
                 "schedulers": trainables.SCHEDULES, "augmentations": trainables.AUGMENTATIONS,
                 "initializations": trainables.INITIALIZATIONS,
                 "datasets": trainables.DATASETS}[args.what].names()
        if args.what == "models":  # and torchvision's classification zoo (timm's too, where installed)
            names = sorted(trainables.list_models(zoo=True))
    print("\n".join(names))
    return 0


def _resume(args) -> int:
    if args.address:  # before Ray is imported: see _ray_env
        os.environ["RAY_ADDRESS"] = args.address
    from hpsearch.platform.query import SearchNotFound
    from hpsearch.platform.search import resume_search

    from hpsearch.search_spaces.spec import SpecError
    from hpsearch.trainables.images import DataError
    from hpsearch.trainables.plugins import PluginError

    try:
        outcome = resume_search(args.search, tracking_uri=args.tracking_uri, address=args.address)
    except SearchNotFound as error:
        raise UsageError([str(error)]) from None
    except SpecError as error:  # its plug-ins or data are gone from where the search found them
        raise UsageError([f"cannot resume {args.search}: {problem}" for problem in error.problems]) from None
    except (DataError, PluginError) as error:
        raise UsageError([f"cannot resume {args.search}: {error}"]) from None
    return _exit_status(outcome.status)


def _lr_find(args) -> int:
    spec = _load(args)
    if args.steps < 10:
        raise UsageError([f"--steps: {args.steps} is too few; the range test needs at least 10 batches"])
    from pathlib import Path

    from hpsearch.platform.lr_find import run_lr_find

    out = Path(args.out) if args.out else Path("lr-find") / spec.name
    outcome = run_lr_find(spec, out=out, num_steps=args.steps)
    from hpsearch.platform.progress import format_config

    config = format_config(outcome.config)
    print(f"configuration: {config}\nsuggested learning rate: {outcome.suggested_lr:.3g}\n"
          f"plot: {outcome.plot}\ntable: {outcome.table}\nMLflow run: {outcome.run_id} ({resolve_uri(spec.tracking.uri)})")
    return 0


def _exit_status(search_status: str) -> int:
    return {"completed": 0, "interrupted": INTERRUPTED}.get(search_status, 1)


def _find(function, *args, **kwargs):
    from hpsearch.platform.query import SearchNotFound

    try:
        return function(*args, **kwargs)
    except SearchNotFound as error:
        raise UsageError([str(error)]) from None


def _trials(args) -> int:
    from hpsearch.platform import query
    from hpsearch.platform.progress import summary_table

    table = _find(query.trials, args.search, args.tracking_uri)
    if args.format == "csv":
        table.to_csv(sys.stdout, index=False)
    elif args.format == "json":
        print(table.to_json(orient="records", indent=2, default_handler=str, double_precision=15))
    else:
        found = _find(query.find_search, args.search, args.tracking_uri)
        print(summary_table(table, metric=found.metric, mode=found.mode, limit=len(table)))
    return 0


def _best(args) -> int:
    from hpsearch.platform import query

    best = _find(query.best, args.search, args.tracking_uri)
    if args.format == "json":
        print(json.dumps(best, indent=2, default=str))
        return 0
    from hpsearch.platform.search import describe_best

    print(f"search {best['search_id']}: {describe_best(best)} ({best['status']}), MLflow run {best['run_id']}")
    for key, value in best["config"].items():
        print(f"  {key}: {value}")
    if "replicates" in best:
        import pandas as pd

        from hpsearch.platform.replicates import format_statistics

        print(f"\nseed replicates, best {best['metric']} of each run:\n"
              f"{format_statistics(pd.DataFrame(best['replicates']))}\n{best['verdict']}\n"
              f"chosen by {best['chosen_by']}")
    return 0


def _replicate(args) -> int:
    problems = []
    if not 1 <= args.top_k <= 20:
        problems.append(f"--top-k: {args.top_k} is not allowed; from 1 to 20 configurations")
    if not 2 <= args.seeds <= 50:
        problems.append(f"--seeds: {args.seeds} is not allowed; from 2 to 50 seeds (two at least, for a spread)")
    if problems:
        raise UsageError(problems)
    from hpsearch.platform.replicates import replicate_search

    return _train_more(args, "replicate", replicate_search, top_k=args.top_k, seeds=args.seeds)


def _train_more(args, verb: str, function, **kwargs) -> int:
    """A command that trains more runs of a finished search (replicate, ablate): its errors as one
    line each, naming the search."""
    if args.address:  # before Ray is imported: see _ray_env
        os.environ["RAY_ADDRESS"] = args.address
    from hpsearch.platform.query import SearchNotFound
    from hpsearch.platform.replicates import ReplicateError
    from hpsearch.search_spaces.spec import SpecError
    from hpsearch.trainables.images import DataError
    from hpsearch.trainables.plugins import PluginError

    try:
        function(args.search, tracking_uri=args.tracking_uri, address=args.address, storage=args.storage, **kwargs)
    except (ReplicateError, SearchNotFound) as error:
        raise UsageError([str(error)]) from None
    except SpecError as error:
        raise UsageError([f"cannot {verb} {args.search}: {problem}" for problem in error.problems]) from None
    except (DataError, PluginError) as error:
        raise UsageError([f"cannot {verb} {args.search}: {error}"]) from None
    return 0


def _ablate(args) -> int:
    if not 2 <= args.seeds <= 50:
        raise UsageError([f"--seeds: {args.seeds} is not allowed; from 2 to 50 seeds (two at least, for an interval)"])
    from hpsearch.platform.ablation import ablate_search

    return _train_more(args, "ablate", ablate_search, trial=args.trial, seeds=args.seeds)


def _finalize(args) -> int:
    if args.address:  # before Ray is imported: see _ray_env
        os.environ["RAY_ADDRESS"] = args.address
    from hpsearch.platform.final import FinalizeError, finalize_search
    from hpsearch.platform.query import SearchNotFound
    from hpsearch.search_spaces.spec import SpecError
    from hpsearch.trainables.images import DataError
    from hpsearch.trainables.plugins import PluginError

    try:
        done = finalize_search(args.search, tracking_uri=args.tracking_uri, trial=args.trial, name=args.name,
                               promote=args.promote, address=args.address)
    except (FinalizeError, SearchNotFound, DataError, PluginError) as error:
        raise UsageError([str(error)]) from None
    except SpecError as error:
        raise UsageError([f"cannot finalize {args.search}: {problem}" for problem in error.problems]) from None
    shown = ", ".join(f"{key} {value:.4f}" for key, value in done.test.items())
    costs = ", ".join(f"{key} {value:,.0f}" if value >= 1000 else f"{key} {value:.4g}" for key, value in done.costs.items())
    print(f"registered {done.model_uri} (aliases: {', '.join(done.aliases)}), trial {done.trial}'s configuration "
          f"trained {done.epochs} epochs on train + val\n  on the test split, evaluated once: {shown}\n"
          + (f"  its costs, as the search measured them: {costs}\n" if costs else "")
          + f"  MLflow run {done.run_id}\n  use it: hpsearch predict models:/{done.name}@{done.aliases[-1]} IMAGES...")
    return 0


def _predict(args) -> int:
    from hpsearch.platform.final import FinalizeError, format_rows, image_files, load_model, predict_rows

    if args.top_k < 1:
        raise UsageError([f"--top-k: {args.top_k} is not allowed; at least 1"])
    try:
        files = image_files(args.images)
        model = load_model(args.model, args.tracking_uri)
        rows = predict_rows(model, files, top_k=args.top_k)
    except FinalizeError as error:
        raise UsageError([str(error)]) from None
    print(format_rows(rows, args.format))
    return 0


def _pareto(args) -> int:
    from hpsearch.platform import query

    found = _find(query.find_search, args.search, args.tracking_uri)
    front = _find(query.pareto, found, args.tracking_uri)
    if args.format == "csv":
        front.to_csv(sys.stdout, index=False)
    elif args.format == "json":
        print(front.to_json(orient="records", indent=2, default_handler=str, double_precision=15))
    else:
        names = " against ".join(f"{metric} ({mode})" for metric, mode in found.objectives) or \
            f"{found.metric} ({found.mode}) alone: it has one objective"
        print(f"search {found.search_id}, {names}: {len(front)} trial{'s' if len(front) != 1 else ''} on the front\n"
              f"{query.format_front(front)}")
    return 0


def _searches(args) -> int:
    from hpsearch.platform import query

    table = _find(query.searches, args.tracking_uri)
    if table.empty:
        print(f"no searches in {query.resolve_uri(args.tracking_uri)}")
        return 0
    print(table.drop(columns=["experiment_id"]).to_string(index=False, na_rep="-"))
    return 0


def _dashboard(args) -> int:
    from hpsearch.dashboard import serve

    return serve(tracking_uri=args.tracking_uri, host=args.host, port=args.port, refresh_s=args.refresh,
                 auth_user=args.auth_user)


if __name__ == "__main__":
    sys.exit(main())
