"""The example notebook, run top to bottom by a real kernel against a real search in a SQLite store."""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from PIL import Image
import pytest
from nbclient import NotebookClient

from hpsearch import query
from hpsearch.trainables import load_dataset
from hpsearch.platform.final import finalize_search
from hpsearch.platform.search import run_search
from hpsearch.search_spaces.spec import load_spec
from tests.conftest import REPO

pytestmark = pytest.mark.e2e

NOTEBOOK = REPO / "examples" / "explore_runs.ipynb"
# Appended to the in-memory copy only: proves the kernel ran this interpreter (the venv's),
# since "python3" is whatever kernelspec jupyter_client finds first.
KERNEL_PREFIX_PROBE = "import sys\nprint('kernel prefix:', sys.prefix)"


def _cell_text(notebook: nbformat.NotebookNode, source_marker: str) -> str:
    """Printed and displayed text of the one code cell whose source contains `source_marker`."""
    cells = [cell for cell in notebook.cells if cell.cell_type == "code" and source_marker in cell.source]
    assert len(cells) == 1, f"expected one cell containing {source_marker!r}, found {len(cells)}"
    parts = []
    for output in cells[0].outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            parts.append(output.data.get("text/plain", ""))
    return "\n".join(parts)


def _has_image(notebook: nbformat.NotebookNode, source_marker: str) -> bool:
    cell = next(cell for cell in notebook.cells if cell.cell_type == "code" and source_marker in cell.source)
    return any("image/png" in output.get("data", {}) for output in cell.outputs)


def test_example_notebook_runs_against_a_real_search(ray_session, tmp_path: Path, monkeypatch):
    # Not tmp_path/mlflow.db: the kernel runs in tmp_path, where the notebook's fallback
    # sqlite:///mlflow.db would point, so only MLFLOW_TRACKING_URI can lead it to this store.
    store = tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store / 'runs.db'}"
    spec = load_spec("digits-quick", overrides=["search.num_samples=3", "train.epochs=2", "search.replicates.top_k=1",
                                                "search.replicates.seeds=2"], tracking_uri=uri)
    run_search(spec, storage=tmp_path / "results")
    finalize_search("digits-quick", tracking_uri=uri, promote=True, progress=lambda line: None)
    expected_trials = query.trials("digits-quick", tracking_uri=uri)
    expected_best = query.best("digits-quick", tracking_uri=uri)
    assert len(expected_trials) == 3

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), \
        "the example notebook is committed without outputs"
    notebook.cells.append(nbformat.v4.new_code_cell(KERNEL_PREFIX_PROBE))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # before the kernel starts, so it inherits it
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()

    errors = [output for cell in notebook.cells for output in cell.get("outputs", [])
              if output.output_type == "error"]
    assert errors == []
    assert f"kernel prefix: {sys.prefix}" in _cell_text(notebook, KERNEL_PREFIX_PROBE)
    assert uri in _cell_text(notebook, "MLFLOW_TRACKING_URI")
    assert "digits-quick" in _cell_text(notebook, "query.searches(")

    trials_text = _cell_text(notebook, "query.trials(")
    assert "3 trials in digits-quick" in trials_text
    best_column = f"best_{expected_best['metric']}"
    tied_best = expected_trials.loc[expected_trials[best_column] == expected_best["value"], "trial"]
    first_row = next(line for line in trials_text.splitlines() if line.startswith("0 "))
    assert first_row.split()[1] in set(tied_best), f"{first_row!r} is not a best trial {list(tied_best)}"
    for trial in expected_trials["trial"]:
        assert trial in trials_text

    assert _has_image(notebook, "query.curves(")

    best_text = _cell_text(notebook, "query.best(")
    assert f"best trial {expected_best['trial']}" in best_text
    assert f"  model: {expected_best['config']['model']}" in best_text

    replicates_text = _cell_text(notebook, "query.replicates(")
    assert expected_best["verdict"] in replicates_text and expected_best["trial"] in replicates_text
    # The champion, loaded in the notebook, classified its test images as it does here.
    assert "models:/digits-quick@champion: 1x8x8 images" in _cell_text(notebook, "query.load_model(")
    champion = query.load_model("models:/digits-quick@champion", uri)
    test = load_dataset("digits").test
    files = []
    for index in range(8):
        files.append(tmp_path / f"check_{index}.png")
        Image.fromarray(test.images[index][0].numpy(), mode="L").save(files[-1])
    right = sum(predicted == str(int(label)) for [(predicted, _)], label in zip(champion.predict(files), test.labels))
    assert f"champion: {right} of 8 test images right" in _cell_text(notebook, "model.predict(")
    assert _has_image(notebook, "model.predict(")
