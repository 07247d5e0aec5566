"""The CLI as a user runs it: one real search, then every command that reads it back."""
from __future__ import annotations

import json

import pytest
import yaml

from hpsearch.platform.cli import main
from tests.conftest import run_cli


def test_list_names_builtin_specs_and_registries(tmp_path, capsys, monkeypatch):
    specs = run_cli("list", cwd=tmp_path)
    assert specs.returncode == 0 and "digits-quick" in specs.stdout.split()
    expected = {"models": {"mlp", "lenet5", "cnn", "vgg", "inception", "resnet", "resnet18"},
                "optimizers": {"sgd", "adam", "adamw", "rmsprop", "adagrad"},
                "schedulers": {"none", "step", "cosine", "onecycle", "plateau"},
                "augmentations": {"none", "light", "strong", "resized_crop", "trivialaugment"},
                "initializations": {"default", "kaiming", "xavier", "orthogonal"},
                "datasets": {"digits", "mnist", "fashion_mnist", "cifar10", "imagefolder"}}
    monkeypatch.chdir(tmp_path)
    for what, names in expected.items():
        assert main(["list", what]) == 0
        listed = capsys.readouterr().out.split()
        if what == "models":  # and torchvision's classification zoo
            assert {"torchvision.resnet50", "torchvision.vit_b_16"} <= set(listed)
            listed = [name for name in listed if not name.startswith(("torchvision.", "timm."))]
        assert set(listed) == names and listed == sorted(listed), what
    assert list(tmp_path.iterdir()) == []


def test_validate_applies_set_and_tracking_uri(tmp_path):
    result = run_cli("validate", "digits-quick", "--set", "search.num_samples=3", "--set", "search.algorithm=optuna",
                     "--tracking-uri", "sqlite:///elsewhere.db", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert resolved["search"]["num_samples"] == 3 and resolved["search"]["algorithm"] == "optuna"
    assert resolved["tracking"]["uri"] == "sqlite:///elsewhere.db"
    assert "# ok: 3 trials, optuna search" in result.stdout


@pytest.mark.parametrize("algorithm, samples, note", [
    ("optuna", 3, "so all 3 are random search"),
    ("optuna", 12, "so 10 of these 12 are random search"),
    ("optuna", 20, None),
    ("random", 3, None),
])
def test_validate_says_when_an_optuna_search_is_mostly_random(tmp_path, capsys, monkeypatch, algorithm, samples, note):
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "digits-quick", "--set", f"search.num_samples={samples}",
                 "--set", f"search.algorithm={algorithm}"]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("# note: Optuna's TPE")]
    assert notes == ([f"# note: Optuna's TPE draws its first 10 trials at random, {note}; with search.num_samples 20 "
                      f"or more TPE chooses most of them"] if note else [])


@pytest.mark.parametrize("constraints, broken", [
    ("[params <= 100]", "24 of 24 break params <= 100"),
    ("[params <= 20000, macs <= 1e9]", "4 of 24 break a constraint"),
    ("[size_mb <= 1]", "0 of 24 break size_mb <= 1"),
    ("[latency_ms <= 1]", None),  # measured on the trial's device: nothing to count beforehand
])
def test_validate_shows_what_static_constraints_do_to_the_space(tmp_path, capsys, monkeypatch, constraints, broken):
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "digits-quick", "--set", f"search.constraints={constraints}"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("# costs", "# note"))]
    if broken is None:
        assert lines == []
        return
    # digits-quick's smallest model is a CNN of 330 parameters (global pooling); its largest an MLP of 50.8k.
    assert lines[0].startswith("# costs of 24 configurations drawn from the space: params 330 to 50.8k"
                               if "params" in constraints else "# costs of 24 configurations drawn from the space: ")
    assert f"; {broken} and would end before training" in lines[0]
    assert (lines[1:] == ["# note: every configuration drawn breaks params <= 100, so most trials would train "
                          "nothing: loosen it, or search smaller models"]) == broken.startswith("24 of 24")
    assert list(tmp_path.iterdir()) == []  # validate starts, writes and downloads nothing


def test_mlflow_tracking_uri_is_honoured(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///env.db")
    assert main(["validate", "digits-quick"]) == 0
    assert "tracking in sqlite:///env.db" in capsys.readouterr().out


def test_reading_a_missing_store_fails_cleanly_and_creates_nothing(tmp_path):
    result = run_cli("best", "nothing-here", "--tracking-uri", f"sqlite:///{tmp_path / 'x.db'}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: no tracking store at sqlite:///") and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.e2e
def test_run_then_read_back_with_trials_and_best(tmp_path, capsys, monkeypatch):
    ran = run_cli("run", "digits-quick", "--set", "search.num_samples=2", "--set", "train.epochs=2", cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "2/2 done" in ran.stdout and "best: trial" in ran.stdout and "hpsearch trials digits-quick" in ran.stdout
    assert (tmp_path / "mlflow.db").exists()  # the embedded default store, in the working directory

    # The reading commands run in this process (the same `main` as the console script): they start
    # no Ray, and each would otherwise spend seconds importing what this process has loaded.
    monkeypatch.chdir(tmp_path)

    def read(*args: str) -> tuple[int, str, str]:
        status = main(list(args))
        out, err = capsys.readouterr()
        return status, out, err

    status, out, _ = read("trials", "digits-quick", "--format", "json")
    rows = json.loads(out)
    assert status == 0 and len(rows) == 2 and {row["status"] for row in rows} == {"completed"}
    assert all(row["epochs"] == 2 for row in rows)
    _, as_csv, _ = read("trials", "digits-quick", "--format", "csv")
    assert as_csv.splitlines()[0].startswith("trial,") and len(as_csv.splitlines()) == 3

    _, best, _ = read("best", "digits-quick", "--format", "json")
    best_trial = json.loads(best)
    assert best_trial["value"] == pytest.approx(max(row["best_val_accuracy"] for row in rows))
    assert best_trial["config"]["model"] in ("mlp", "cnn")

    status, _, err = read("trials", "digits-quik")
    assert status == 2
    assert err.startswith("error: no search named 'digits-quik'") and "did you mean 'digits-quick'" in err

    _, searches, _ = read("searches")
    assert "digits-quick-" in searches and "completed" in searches


def _one_error(result, pattern: str) -> None:
    import re

    assert result.returncode in (1, 2), result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(pattern, lines[0]), result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("command", [("searches",), ("pareto", "digits-quick"), ("validate", "digits-quick"),
                                     ("run", "digits-quick")])
def test_a_tracking_uri_mlflow_has_no_store_for_is_one_line(tmp_path, command):
    passed = run_cli(*command, "--tracking-uri", "htp://127.0.0.1:5000", cwd=tmp_path, timeout=120)
    _one_error(passed, r"^error: (--)?tracking[.-]uri: 'htp://127\.0\.0\.1:5000' is not an MLflow tracking URI; its "
                       r"scheme is one of \[.*\] .*\(did you mean 'http'\?\)$")
    from_environment = run_cli(*command, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": "bogus://x"}, timeout=120)
    _one_error(from_environment, r"^error: \$MLFLOW_TRACKING_URI: 'bogus://x' is not an MLflow tracking URI")
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing written


@pytest.mark.parametrize("command", [("searches",), ("trials", "digits-quick"), ("run", "digits-quick")])
def test_a_tracking_server_that_does_not_answer_fails_at_once(tmp_path, command):
    """MLflow's client would retry for minutes; the command asks once and says why."""
    from tests.dashboard.conftest import free_port

    uri = f"http://hpsearch:secret@127.0.0.1:{free_port()}"  # nothing listens there
    result = run_cli(*command, "--tracking-uri", uri, cwd=tmp_path, timeout=60)
    _one_error(result, r"^error: no MLflow tracking server answers at http://hpsearch:\*\*\*@127\.0\.0\.1:\d+ "
                       r"\(connection refused\); start it \(hpsearch tracking-server\), or pass another --tracking-uri$")
    assert list(tmp_path.iterdir()) == []


def test_a_web_server_that_is_not_mlflow_is_one_line(tmp_path):
    import http.server
    import threading

    class NotMlflow(http.server.BaseHTTPRequestHandler):
        def _page(self) -> None:
            body = b"<!DOCTYPE html>\n<html><body>Not Found</body></html>\n"
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _page

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotMlflow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        for command in (("searches",), ("pareto", "digits-quick")):
            result = run_cli(*command, "--tracking-uri", uri, cwd=tmp_path, timeout=60)
            _one_error(result, rf"^error: the MLflow tracking store at {uri} failed: API request to endpoint "
                               r"/api/2\.0/mlflow/.* failed with error code \d+ != 200 \(is it an MLflow tracking server\?\)$")
    finally:
        server.shutdown()
        server.server_close()
