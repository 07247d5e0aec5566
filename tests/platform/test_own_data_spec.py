"""Specs over a user's own images and models: what `validate` reads, imports and refuses, in one line.

Real folders of PNG files and real plug-in modules written into tmp_path; nothing runs a search.
"""
from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest
import yaml

from hpsearch.platform.cli import main
from hpsearch.platform.cluster.jobs import prepare_submission
from hpsearch.search_spaces.spec import SpecError, load_spec
from tests.imagefolder_data import write_corrupt, write_sklearn_digits_tree, write_zoo_weights

PLUGIN = '''
from torch import nn

def small(num_classes, in_channels, image_size, width=4):
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(width, num_classes))

def folders(root, size=16):
    import torchvision
    return (torchvision.datasets.ImageFolder(root), torchvision.datasets.ImageFolder(root),
            torchvision.datasets.ImageFolder(root), ["a", "b"])
'''


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """An ImageFolder tree of real PNG files: 10 classes x 8 scikit-learn digits at 16 px."""
    return write_sklearn_digits_tree(tmp_path_factory.mktemp("images"), per_class=8)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A user's project: a plug-in module beside where its spec will be."""
    name = f"nets_{abs(hash(str(tmp_path))) % 10**8}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(PLUGIN))
    (tmp_path / "module_name").write_text(name)
    return tmp_path


def _module(project: Path) -> str:
    return (project / "module_name").read_text()


def _write(folder: Path, spec: dict, name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump({"name": "own", **spec}, sort_keys=False))
    return path


def _validate(path: Path, capsys, *extra: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(["validate", str(path), *extra])
    out, err = capsys.readouterr()
    return status, out, err


def _one_error(status: int, err: str, pattern: str) -> None:
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert re.search(pattern, lines[0]), lines[0]


def test_an_imagefolder_spec_with_a_plugin_model_validates(images: Path, project: Path, capsys) -> None:
    module = _module(project)
    path = _write(project, {
        "dataset": {"name": "imagefolder", "root": str(images), "image_size": 16, "channels": 1},
        "space": {"model": {"choice": {f"{module}:small": {"width": {"choice": [4, 8]}}, "cnn": {}}}},
    })
    status, out, err = _validate(path, capsys)
    assert status == 0, err
    assert "# data: 80 images in 10 classes (" in out and "split with dataset.seed" in out


def test_paths_in_a_spec_file_are_relative_to_its_folder(images: Path, tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "specs"
    folder.mkdir()
    os.symlink(images, folder / "pictures")
    path = _write(folder, {"dataset": {"name": "imagefolder", "root": "pictures"}})
    monkeypatch.chdir(tmp_path)  # not the spec's folder
    spec = load_spec(str(path))
    assert spec.dataset.root == str(folder / "pictures")
    assert spec.plugin_paths == [str(folder.resolve())]


@pytest.mark.parametrize(("dataset", "pattern"), [
    ({"name": "imagefolder"}, r"dataset.root: required for imagefolder"),
    ({"name": "digits", "image_size": 32}, r"dataset.image_size: applies to imagefolder and plug-in datasets, "
                                           r"not the built-in 'digits'"),
    ({"name": "imagefolder", "root": "{images}", "mean": [1.0, 2.0], "std": [1.0, 2.0, 3.0]},
     r"dataset.mean: 2 values for 3 channels"),
    ({"name": "imagefolder", "root": "{images}", "memory_budget": "lots"}, r"dataset.memory_budget: 'lots' is not "
                                                                          r"a size; write 512MB, 2GB"),
    ({"name": "imagefolder", "root": "{images}", "workers": 2}, r"dataset.workers: 2 loader processes need "
                                                              r"resources.cpus of at least 3 \(it is 1\)"),
    ({"factory": "nowhere_at_all:make"}, r"dataset.factory: dataset 'nowhere_at_all:make': no module "
                                         r"'nowhere_at_all'"),
    ({"factory": "{module}:folders", "args": {"rooot": "x"}}, r"dataset.args: .*:folders cannot be called with "
                                                              r"\['rooot'\]"),
    ({"name": "digits", "factory": "{module}:folders"}, r"dataset.name: 'digits' and dataset.factory .* both name "
                                                        r"the dataset; keep one"),
])
def test_a_bad_dataset_section_is_one_line(dataset: dict, pattern: str, images: Path, project: Path,
                                           capsys) -> None:
    shown = yaml.safe_load(yaml.safe_dump(dataset).replace("{images}", str(images))
                           .replace("{module}", _module(project)))
    status, _, err = _validate(_write(project, {"dataset": shown}), capsys)
    _one_error(status, err, pattern)


def _bad_tree(root: Path, problem: str) -> tuple[Path, str]:
    write_sklearn_digits_tree(root, per_class=3)
    if problem == "empty class":
        (root / "zzz").mkdir()
        return root, rf"class folder {root / 'zzz'} holds no images"
    if problem == "corrupt file":
        bad = write_corrupt(root / "three" / "broken.png")
        return root, rf"{bad}: not a readable image .* or set dataset.skip_corrupt: true"
    if problem == "one class":
        only = root.parent / f"{root.name}-one"
        (only / "cats").mkdir(parents=True)
        (root / "one" / sorted(os.listdir(root / "one"))[0]).rename(only / "cats" / "a.png")
        return only, r"has a single class folder \('cats'\)"
    if problem == "classes differ":
        split = root.parent / f"{root.name}-split"
        (split / "train").mkdir(parents=True)
        for name in ("one", "two"):
            (root / name).rename(split / "train" / name)
        (split / "test").mkdir()
        for name in ("one", "three"):
            (root / ("three" if name == "three" else "four")).rename(split / "test" / name)
        return split, rf"{split / 'test'} has classes that differ from {split / 'train'}: missing \['two'\]; " \
                      rf"not in train: \['three'\]"
    if problem == "no root":
        return root / "nope", rf"dataset.root: .*nope does not exist"
    raise AssertionError(problem)


@pytest.mark.parametrize("problem", ["empty class", "corrupt file", "one class", "classes differ", "no root"])
def test_bad_data_is_named_at_validate_time(problem: str, tmp_path: Path, capsys) -> None:
    root, pattern = _bad_tree(tmp_path / "data", problem)
    path = _write(tmp_path, {"dataset": {"name": "imagefolder", "root": str(root)}})
    status, _, err = _validate(path, capsys)
    _one_error(status, err, pattern)


def test_skip_corrupt_counts_what_it_skips(tmp_path: Path, capsys) -> None:
    root = write_sklearn_digits_tree(tmp_path / "data", per_class=3)
    write_corrupt(root / "three" / "broken.png")
    path = _write(tmp_path, {"dataset": {"name": "imagefolder", "root": str(root), "skip_corrupt": True}})
    status, out, err = _validate(path, capsys)
    assert status == 0, err
    assert "# data: 30 images in 10 classes" in out and "1 unreadable files skipped" in out


@pytest.mark.parametrize(("space", "pattern"), [
    ({"model": {"choice": {"{module}:small": {"widht": {"choice": [4, 8]}}}}},
     r"space.model: model '.*:small' does not accept the parameters \['widht'\]; its parameters: \['width'\]"),
    ({"width": {"choice": [4, 8]}, "model": {"choice": ["{module}:small", "cnn"]}},
     r"space.model: \['width'\] are not hpsearch settings, and model 'cnn' takes no plug-in parameters"),
    ({"model": {"choice": ["{module}:nothing"]}}, r"has no 'nothing'; its functions: \[.*'small'.*\]"),
    ({"model": "torchvision.vgg11"}, r"space.model: model 'torchvision.vgg11' cannot take 1x16x16 images "
                                        r"\(.*\); raise dataset.image_size"),
    ({"model": "torchvision.resnet5O"}, r"torchvision has no classification model 'resnet5O'.*did you mean "
                                        r"'resnet50'"),
])
def test_a_model_the_search_cannot_build_is_one_line(space: dict, pattern: str, images: Path, project: Path,
                                                     capsys) -> None:
    module = _module(project)
    shown = yaml.safe_load(yaml.safe_dump(space).replace("{module}", module))
    path = _write(project, {"dataset": {"name": "imagefolder", "root": str(images), "image_size": 16,
                                        "channels": 1}, "space": shown})
    status, _, err = _validate(path, capsys)
    _one_error(status, err, pattern)


def test_pretrained_weights_are_looked_for_at_validate_time(images: Path, tmp_path: Path, monkeypatch,
                                                            capsys) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    spec = {"dataset": {"name": "imagefolder", "root": str(images), "image_size": 32},
            "train": {"pretrained": True}, "space": {"model": {"choice": ["torchvision.resnet18"]}}}
    status, _, err = _validate(_write(tmp_path, spec), capsys)
    _one_error(status, err, rf"space.model: pretrained weights of torchvision.resnet18 not found: looked for "
                            rf"{tmp_path / 'torch' / 'hub' / 'checkpoints' / 'resnet18-f37072fd.pth'}")

    write_zoo_weights(tmp_path / "torch", "resnet18")
    assert _validate(_write(tmp_path, spec), capsys)[0] == 0

    spec["space"]["model"]["choice"].append("cnn")
    status, _, err = _validate(_write(tmp_path, spec), capsys)
    _one_error(status, err, r"pretrained: model 'cnn' has no published weights")


def test_submit_ships_the_spec_folder_and_plugin_packages_and_leaves_the_data(tmp_path: Path) -> None:
    job = tmp_path / "job"
    write_sklearn_digits_tree(job / "data", per_class=3)
    package = tmp_path / "shared_models"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    path = _write(job, {"dataset": {"name": "imagefolder", "root": "data", "image_size": 16},
                        "plugins": ["../shared_models"], "train": {"model": "shared_models:small"}})

    submission = prepare_submission(str(path))

    assert submission.runtime_env["working_dir"] == str(job)
    assert submission.runtime_env["py_modules"] == [str(package)]
    assert submission.runtime_env["excludes"] == ["/data"]
    assert f"--set dataset.root={job / 'data'}" in submission.entrypoint
    assert any("not uploaded" in note for note in submission.notes)


def test_submit_refuses_a_plugin_folder_that_cannot_travel(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "nets.py").write_text(textwrap.dedent(PLUGIN))
    (tmp_path / "job").mkdir()
    path = _write(tmp_path / "job", {"plugins": ["../loose"], "train": {"model": "nets:small"}})
    with pytest.raises(SpecError, match=r"plugins: '../loose' is outside the spec's folder and is not a package"):
        prepare_submission(str(path))


def test_list_models_includes_torchvisions_zoo(capsys) -> None:
    assert main(["list", "models"]) == 0
    names = capsys.readouterr().out.split()
    assert {"cnn", "torchvision.resnet50", "torchvision.mobilenet_v3_small"} <= set(names)


def test_submit_leaves_a_folder_only_the_cluster_has_to_the_cluster(tmp_path: Path, capsys) -> None:
    spec = {"dataset": {"name": "imagefolder", "root": "/mnt/cluster-only/pets", "image_size": 32}}
    path = _write(tmp_path, spec)
    status, _, err = _validate(path, capsys)  # here, the folder must be here
    _one_error(status, err, r"dataset.root: /mnt/cluster-only/pets does not exist")

    submission = prepare_submission(str(path))  # submitted, the nodes read it
    assert any("/mnt/cluster-only/pets is not on this machine" in note for note in submission.notes)
    assert "--set dataset.root=/mnt/cluster-only/pets" in submission.entrypoint


def test_a_plugins_entry_that_is_not_there_is_one_line(tmp_path: Path, capsys) -> None:
    status, _, err = _validate(_write(tmp_path, {"plugins": ["../models"]}), capsys)
    _one_error(status, err, rf"plugins\[0\]: '../models' is not a folder, package or .py module \(relative to the "
                            rf"spec's folder {tmp_path}\)")
