"""`hpsearch submit`, `jobs`, `logs`, `stop`, `node-versions` and `tracking-server`: searches on a Ray cluster."""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

from hpsearch.platform import defaults
from hpsearch.platform.cluster.retry import DEFAULT_RETRY_FOR_S
from hpsearch.platform.errors import UsageError

ADDRESS_HELP = "the Ray head node's dashboard, e.g. http://HEAD:8265 (default: $RAY_ADDRESS)"
RETRY_HELP = (f"while the cluster is not ready (starting, no job agent yet, 502/503/504), retry for up to this "
              f"many seconds (default: {DEFAULT_RETRY_FOR_S:g}; 0: no retries)")


def add_commands(command) -> None:
    """Add the cluster commands through cli.build_parser's `command(name, handler, help)`."""
    submit = command("submit", _cluster_command(_submit),
                     "Run a search on a Ray cluster, as a Ray job; or finalize or replicate a search that ran "
                     "(`hpsearch submit finalize SEARCH`, `hpsearch submit replicate SEARCH`).")
    submit.add_argument("spec", help="a YAML spec file (sent with its folder), or a built-in spec name; or finalize "
                                     "or replicate, then a search (./finalize for a file of that name)")
    submit.add_argument("search", nargs="?", help="after finalize or replicate: the search's name or id")
    _cluster_arguments(submit)
    submit.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                        help="override a spec field, e.g. --set search.num_samples=4 (repeatable)")
    submit.add_argument("--tracking-uri", help="MLflow tracking URI the cluster can reach, e.g. http://HOST:5000 "
                                               "(`hpsearch tracking-server`); a password in it is sent apart")
    submit.add_argument("--storage", help="Tune's experiment state and checkpoints, as the head node sees it "
                                          "(shared storage lets a trial restart on another node)")
    submit.add_argument("--wait", action="store_true",
                        help="follow the job's log until it ends; exit 0 if it succeeded, 1 if it failed, "
                             "130 if it was stopped")
    submit.add_argument("--no-check", dest="check", action="store_false",
                        help="skip the short job that first checks every node has this machine's hpsearch and Ray")
    action = submit.add_argument_group("finalize and replicate, as `hpsearch finalize` and `hpsearch replicate` take them")
    action.add_argument("--trial", help="finalize: the trial whose configuration to finalize (default: the best)")
    action.add_argument("--name", help="finalize: registered model name (default: the spec's name)")
    action.add_argument("--promote", action="store_true", help="finalize: also move the alias 'champion'")
    action.add_argument("--top-k", type=int, help="replicate: configurations to replicate (default: 3)")
    action.add_argument("--seeds", type=int, help="replicate: new training seeds each (default: 5)")

    jobs = command("jobs", _cluster_command(_jobs), "List the jobs of a Ray cluster.")
    _cluster_arguments(jobs)

    logs = command("logs", _cluster_command(_logs), "Print a Ray job's log.")
    logs.add_argument("job", help="the job's id, as `hpsearch submit` printed it")
    _cluster_arguments(logs)
    logs.add_argument("--follow", action="store_true", help="keep printing until the job ends")

    stop = command("stop", _cluster_command(_stop), "Stop a Ray job; its trials end and its MLflow runs are closed.")
    stop.add_argument("job", help="the job's id, as `hpsearch submit` printed it")
    _cluster_arguments(stop)

    versions = command("node-versions", _node_versions,
                       "Print each node's hpsearch, Ray and Python versions; run it on a node of the cluster "
                       "(`hpsearch submit` runs it there as a short job).")
    versions.add_argument("--address", help="the cluster's GCS address, HEAD:6379 (default: $RAY_ADDRESS, which "
                                            "Ray Jobs sets, else the cluster this node belongs to)")
    versions.add_argument("--json", action="store_true", help="one JSON line, as `hpsearch submit` reads it")

    server = command("tracking-server", _tracking_server,
                     "Run an MLflow tracking server that the nodes of a cluster track to, artifacts included.")
    server.add_argument("--host", default=defaults.LOOPBACK,
                        help=f"interface to listen on (default: {defaults.LOOPBACK}, this machine only; "
                             f"0.0.0.0 for a cluster)")
    server.add_argument("--port", type=int, default=defaults.MLFLOW_PORT,
                        help=f"port (default: {defaults.MLFLOW_PORT})")
    server.add_argument("--backend-store-uri", default="sqlite:///mlflow-server.db",
                        help="where runs are kept: sqlite:///FILE or postgresql://USER:PASSWORD@HOST:PORT/DB "
                             "(default: sqlite:///mlflow-server.db)")
    server.add_argument("--artifacts-destination", default="./mlartifacts",
                        help="where checkpoints and other artifacts are kept: a folder or s3://... "
                             "(default: ./mlartifacts)")
    server.add_argument("--auth", action="store_true",
                        help="require a login (MLflow's basic-auth app); the first user is admin, with the "
                             "password in $MLFLOW_AUTH_ADMIN_PASSWORD")
    server.add_argument("--allowed-hosts", metavar="HOSTS",
                        help="the Host headers clients send, with their port, comma-separated, * as a wildcard "
                             "(e.g. mlflow:5000,localhost:*); replaces MLflow's default: localhost and private IPs")
    server.add_argument("--workers", type=int, help="server processes (default: MLflow's, 4)")


def _cluster_arguments(parser) -> None:
    parser.add_argument("--address", help=ADDRESS_HELP)
    parser.add_argument("--retry-for", type=float, default=DEFAULT_RETRY_FOR_S, metavar="SECONDS", help=RETRY_HELP)


def _cluster_command(handler):
    """A cluster that cannot be reached, has no such job or runs other versions: one line each, exit status 2."""
    @functools.wraps(handler)
    def run(args) -> int:
        from hpsearch.platform.cluster import jobs
        from hpsearch.platform.cluster.retry import ClusterUnavailable
        from hpsearch.platform.cluster.versions import ClusterMismatch

        try:
            return handler(args)
        except (ClusterUnavailable, jobs.JobNotFound) as error:
            raise UsageError([str(error)]) from None
        except ClusterMismatch as error:
            raise UsageError(error.problems) from None

    return run


def _address(args) -> str | None:
    return args.address or os.environ.get("RAY_ADDRESS") or None


def _missing_address() -> str:
    return ("--address: no Ray cluster given; pass --address http://HEAD:8265 (the head node's dashboard) "
            "or set RAY_ADDRESS")


def _retry_problems(args) -> list[str]:
    if args.retry_for < 0:
        return [f"--retry-for: {args.retry_for:g} is negative; seconds to retry for, 0 for no retries"]
    return []


def _client(args):
    from hpsearch.platform.cluster import jobs

    address = _address(args)
    problems = ([] if address else [_missing_address()]) + _retry_problems(args)
    if problems:
        raise UsageError(problems)
    try:
        return jobs.connect(address, retry_for_s=args.retry_for)
    except ValueError as error:
        raise UsageError([str(error)]) from None


def _submit(args) -> int:
    from hpsearch.platform.cluster import jobs, versions
    from hpsearch.search_spaces.spec import SpecError

    address = _address(args)
    problems = ([] if address else [_missing_address()]) + _retry_problems(args)
    if args.spec in jobs.ACTIONS:
        action_problems, options = _action_options(args)
        problems += action_problems
        submission = None if action_problems else jobs.prepare_action(
            args.spec, args.search, options=options, tracking_uri=args.tracking_uri)
    else:
        given = [name for name, value in (("--trial", args.trial), ("--name", args.name), ("--top-k", args.top_k),
                                          ("--seeds", args.seeds)) if value is not None]
        given += ["--promote"] if args.promote else []
        if args.search is not None:
            problems.append(f"{args.search}: a second argument goes only after finalize or replicate; a search is "
                            f"submitted as `hpsearch submit SPEC`")
        if given:
            problems.append(f"{', '.join(given)}: only for `hpsearch submit finalize|replicate SEARCH`")
        try:
            submission = jobs.prepare_submission(args.spec, overrides=args.overrides, tracking_uri=args.tracking_uri,
                                                 storage=args.storage)
        except SpecError as error:
            problems += error.problems
    if problems:  # nothing is submitted
        raise UsageError(problems)
    client = _client(args)
    if args.check:
        print("checking the cluster's hpsearch and Ray versions (--no-check skips it)", file=sys.stderr, flush=True)
        for warning in versions.check(client, url=jobs.dashboard_url(address)):
            print(warning, file=sys.stderr)
    for note in submission.notes:
        print(note, file=sys.stderr)
    job_id = jobs.submit(client, submission)
    print("\n".join(jobs.describe_submission(job_id, address=address, submission=submission)), flush=True)
    if not args.wait:
        return 0
    return _follow(client, job_id, address)


def _action_options(args) -> tuple[list[str], list[str]]:
    """The problems with `hpsearch submit finalize|replicate SEARCH ...`, and the options the job passes on."""
    problems, options = [], []
    if not args.search:
        problems.append(f"{args.spec}: which search? `hpsearch submit {args.spec} SEARCH` (its name or id)")
    if args.overrides:
        problems.append(f"--set: only for a spec; {args.spec} uses the search's own spec")
    wrong = (("--top-k", args.top_k), ("--seeds", args.seeds)) if args.spec == "finalize" else \
        (("--trial", args.trial), ("--name", args.name), ("--promote", args.promote or None))
    problems += [f"{name}: not an option of {args.spec}" for name, value in wrong if value is not None]
    if args.spec == "replicate":
        if args.top_k is not None and not 1 <= args.top_k <= 20:
            problems.append(f"--top-k: {args.top_k} is not allowed; from 1 to 20 configurations")
        if args.seeds is not None and not 2 <= args.seeds <= 50:
            problems.append(f"--seeds: {args.seeds} is not allowed; from 2 to 50 seeds (two at least, for a spread)")
        options += [part for name, value in (("--top-k", args.top_k), ("--seeds", args.seeds), ("--storage", args.storage))
                    if value is not None for part in (name, str(value))]
    else:
        if args.storage:
            problems.append("--storage: not an option of finalize")
        options += [part for name, value in (("--trial", args.trial), ("--name", args.name)) if value
                    for part in (name, value)] + (["--promote"] if args.promote else [])
    return problems, options


def _follow(client, job_id: str, address: str) -> int:
    from hpsearch.platform.cluster import jobs

    try:
        status = jobs.follow(client, job_id)
    except KeyboardInterrupt:
        print(f"\nstopped following job {job_id}; it goes on. Stop it with: "
              f"hpsearch stop {job_id} --address {jobs.dashboard_url(address)}", file=sys.stderr)
        return 130
    print(f"job {job_id} {status}", flush=True)
    return jobs.EXIT_STATUS.get(status, 1)


def _jobs(args) -> int:
    from hpsearch.platform.cluster import jobs

    print(jobs.job_table(_client(args)))
    return 0


def _logs(args) -> int:
    from hpsearch.platform.cluster import jobs

    client = _client(args)
    if args.follow:
        return _follow(client, args.job, _address(args))
    jobs.job_info(client, args.job)
    print(client.get_job_logs(args.job), end="", flush=True)
    return 0


def _stop(args) -> int:
    from hpsearch.platform.cluster import jobs

    client = _client(args)
    was_running, status = jobs.stop(client, args.job)
    if was_running:
        print(f"job {args.job} {status}" if status in jobs.TERMINAL
              else f"job {args.job}: stop requested, still {status}")
    else:
        print(f"job {args.job} had already ended: {status}")
    return 0


def _node_versions(args) -> int:
    import json

    from hpsearch.platform.cluster import versions

    rows = versions.node_versions(address=args.address)
    print(f"{versions.JSON_MARK}{json.dumps(rows)}" if args.json else versions.node_table(rows), flush=True)
    return 0


def _tracking_server(args) -> int:
    from hpsearch.platform.tracking.server import ServerSettings, serve

    problems = []
    if not 0 < args.port < 65536:
        problems.append(f"--port: {args.port} is not a TCP port (1-65535)")
    if args.workers is not None and args.workers < 1:
        problems.append(f"--workers: {args.workers} is too few; at least 1")
    if args.auth and not (os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD") or os.environ.get("MLFLOW_AUTH_CONFIG_PATH")):
        problems.append("--auth: set MLFLOW_AUTH_ADMIN_PASSWORD to the password of the first user, admin "
                        "(MLflow ships no default)")
    if "://" not in args.backend_store_uri:
        problems.append(f"--backend-store-uri: {args.backend_store_uri!r} is not a database URI; "
                        f"e.g. sqlite:///mlflow-server.db or postgresql://USER:PASSWORD@HOST:5432/mlflow")
    if problems:
        raise UsageError(problems)
    destination = args.artifacts_destination
    if "://" not in destination:  # a folder: made absolute, so that it means the same to MLflow and the user
        destination = str(Path(destination).expanduser().resolve())
    return serve(ServerSettings(host=args.host, port=args.port, backend_store_uri=args.backend_store_uri,
                                artifacts_destination=destination, auth=args.auth, allowed_hosts=args.allowed_hosts,
                                workers=args.workers))
