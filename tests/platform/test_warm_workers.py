"""A local session's first worker processes import torch before any trial, and Tune's trial actors
can take them (see hpsearch.platform.compat).

The search runs in a child process: it needs a Ray session of its own, fresh, not the suite's."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.e2e

SCRIPT = r"""
import json, sys, time
import psutil
from hpsearch.platform.search import init_ray, run_search
from hpsearch.search_spaces.spec import validate_spec

def workers():
    return {p.pid for p in psutil.Process().children(recursive=True) if p.name() == "ray::IDLE"}

def with_torch(pid):
    try:
        return "libtorch_cpu" in open(f"/proc/{pid}/maps").read()
    except OSError:
        return False

def cpu(pids):
    return [sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids]

def ready(pids):
    # Both processes have torch loaded and are done importing: they idle through a second.
    if len(pids) != 2 or not all(map(with_torch, pids)):
        return False
    before = cpu(pids)
    time.sleep(1)
    return all(after - first < 0.1 for first, after in zip(before, cpu(pids)))

init_ray(num_cpus=2)
deadline = time.monotonic() + 90
while time.monotonic() < deadline and not ready(workers()):
    time.sleep(0.2)
prestarted = sorted(workers())
warm = [with_torch(pid) for pid in prestarted]
from ray.tune.execution.class_cache import _ActorClassCache
from hpsearch.platform.trial import SearchTrial
registered = _ActorClassCache().get(SearchTrial)._default_options
spec = validate_spec({"name": "warm", "search": {"algorithm": "grid", "max_concurrent": 2},
                      "train": {"epochs": 1, "model": "mlp", "hidden_sizes": [16]},
                      "tracking": {"uri": sys.argv[1], "experiment": "warm"},
                      "space": {"lr": {"grid": [0.001, 0.002]}}})
outcome = run_search(spec, storage=sys.argv[2])
import mlflow
mlflow.set_tracking_uri(sys.argv[1])
runs = mlflow.search_runs(search_all_experiments=True, filter_string="tags.`hpsearch.role` = 'trial'")
import ray
ray.shutdown()
class Elsewhere(SearchTrial):  # registered with no local session of hpsearch's: Tune's way stands
    pass
print(json.dumps({"prestarted": prestarted, "warm": warm, "status": outcome.status,
                  "runtime_env": registered.get("runtime_env"),
                  "runtime_env_elsewhere": _ActorClassCache().get(Elsewhere)._default_options.get("runtime_env"),
                  "trial_pids": sorted(int(pid) for pid in runs["tags.hpsearch.process"])}))
"""


def test_prestarted_processes_load_torch_and_trial_actors_ask_for_no_runtime_env(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = subprocess.run([sys.executable, "-c", SCRIPT, uri, str(tmp_path / "results")], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])

    assert len(found["prestarted"]) == 2 and found["warm"] == [True, True], found
    assert found["status"] == "completed"
    # Tune registers the trainable without a runtime_env of its own (its variables are already in
    # the environment the session's processes inherited), so its actors can take those processes.
    assert found["runtime_env"] is None, found
    assert found["runtime_env_elsewhere"]["env_vars"]["PL_DISABLE_FORK"] == "1", found
    assert len(set(found["trial_pids"])) == 2, found  # side by side, one process each
    # In the prestarted processes: Ray's raylet kept them (it used to kill both, now and then, as
    # idle, and start two cold ones for the trials).
    assert set(found["trial_pids"]) == set(found["prestarted"]), found
