"""torchvision's zoo and plug-in models: heads, stems, pretrained weights from disk, freezing, head lr."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from hpsearch.trainables import TrainConfig, build_model, build_optimizer
from hpsearch.trainables.models import head_name, parameter_groups
from hpsearch.trainables.plugins import PluginError, check_model_factory, import_factory
from hpsearch.trainables.zoo import model_problem, weights_file, weights_problem
from tests.imagefolder_data import write_zoo_weights


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch) -> Path:
    home = tmp_path / "torch"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def _output(model: nn.Module, shape: tuple[int, int, int]) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(torch.rand(2, *shape))


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "squeezenet1_1", "efficientnet_b0"])
@pytest.mark.parametrize("channels", [1, 3])
def test_a_zoo_model_takes_the_datasets_channels_and_classes(name: str, channels: int) -> None:
    model = build_model(TrainConfig(model=f"torchvision.{name}"), input_shape=(channels, 32, 32), num_classes=7)
    assert _output(model, (channels, 32, 32)).shape == (2, 7)
    first = next(module for module in model.modules() if isinstance(module, nn.Conv2d))
    assert first.in_channels == channels


def test_pretrained_weights_are_read_from_torch_hubs_cache(torch_home: Path) -> None:
    path = write_zoo_weights(torch_home, "resnet18")["resnet18"]
    saved = torch.load(path, weights_only=True)

    model = build_model(TrainConfig(model="torchvision.resnet18", pretrained=True), input_shape=(3, 32, 32),
                        num_classes=4)

    state = model.state_dict()
    assert torch.equal(state["layer4.1.conv2.weight"], saved["layer4.1.conv2.weight"])
    assert state["fc.weight"].shape == (4, 512)  # a new head for the dataset's 4 classes
    assert head_name(model) == "fc"


def test_pretrained_rgb_filters_are_summed_for_grayscale(torch_home: Path) -> None:
    saved = torch.load(write_zoo_weights(torch_home, "resnet18")["resnet18"], weights_only=True)
    model = build_model(TrainConfig(model="torchvision.resnet18", pretrained=True), input_shape=(1, 32, 32),
                        num_classes=4)
    assert torch.allclose(model.conv1.weight, saved["conv1.weight"].sum(dim=1, keepdim=True))
    # A gray image through the summed filters is the gray image through the RGB filters.
    gray = torch.rand(1, 1, 32, 32)
    rgb = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
    rgb.weight.data.copy_(saved["conv1.weight"])
    assert torch.allclose(model.conv1(gray), rgb(gray.expand(1, 3, 32, 32)), atol=1e-5)


def test_missing_weights_say_where_they_were_looked_for(torch_home: Path) -> None:
    problem = weights_problem("torchvision.resnet18", None)
    expected = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert str(expected) in problem and "weights_path" in problem
    assert weights_file("torchvision.resnet18", None) == expected
    with pytest.raises(FileNotFoundError, match="resnet18-f37072fd.pth"):
        build_model(TrainConfig(model="torchvision.resnet18", pretrained=True), input_shape=(3, 32, 32),
                    num_classes=4)


def test_weights_path_overrides_the_cache(torch_home: Path, tmp_path: Path) -> None:
    own = tmp_path / "mine.pth"
    torch.manual_seed(3)
    import torchvision

    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), own)
    model = build_model(TrainConfig(model="torchvision.mobilenet_v3_small", pretrained=True, weights_path=str(own)),
                        input_shape=(3, 32, 32), num_classes=3)
    assert torch.equal(model.features[0][0].weight, torch.load(own, weights_only=True)["features.0.0.weight"])
    assert _output(model, (3, 32, 32)).shape == (2, 3)


def test_freeze_backbone_trains_the_head_alone() -> None:
    model = build_model(TrainConfig(model="torchvision.resnet18", freeze="backbone"), input_shape=(3, 32, 32),
                        num_classes=5)
    trained = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert trained == {"fc.weight", "fc.bias"}


def test_freeze_all_but_last_n_trains_the_last_blocks() -> None:
    model = build_model(TrainConfig(model="torchvision.resnet18", freeze="all_but_last_n", unfrozen_blocks=2),
                        input_shape=(3, 32, 32), num_classes=5)
    trained = {name.split(".")[0] for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert trained == {"layer4", "fc"}


def test_a_frozen_backbone_does_not_move_in_training() -> None:
    config = TrainConfig(model="torchvision.resnet18", freeze="backbone", lr=0.1, optimizer="sgd")
    model = build_model(config, input_shape=(3, 32, 32), num_classes=3)
    before = {name: value.clone() for name, value in model.named_parameters()}
    optimizer = build_optimizer(config, parameter_groups(model, config))
    model.train()
    loss = nn.functional.cross_entropy(model(torch.rand(4, 3, 32, 32)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    optimizer.step()
    moved = {name for name, value in model.named_parameters() if not torch.equal(value, before[name])}
    assert moved == {"fc.weight", "fc.bias"}


def test_head_lr_multiplier_gives_the_head_its_own_learning_rate() -> None:
    config = TrainConfig(model="torchvision.resnet18", lr=0.002, head_lr_multiplier=10)
    model = build_model(config, input_shape=(3, 32, 32), num_classes=3)
    optimizer = build_optimizer(config, parameter_groups(model, config))
    body, head = optimizer.param_groups
    assert body["lr"] == pytest.approx(0.002) and head["lr"] == pytest.approx(0.02)
    assert {id(p) for p in head["params"]} == {id(model.fc.weight), id(model.fc.bias)}
    assert len(body["params"]) + len(head["params"]) == len(list(model.parameters()))


def test_dropout_goes_before_a_zoo_models_head() -> None:
    model = build_model(TrainConfig(model="torchvision.resnet18", dropout=0.3), input_shape=(3, 32, 32),
                        num_classes=3)
    assert isinstance(model.fc, nn.Sequential) and model.fc[0].p == 0.3 and head_name(model) == "fc.1"


@pytest.mark.parametrize(("name", "pattern"), [
    ("torchvision.resnet5O", r"torchvision has no classification model 'resnet5O'.*did you mean 'resnet50'"),
    ("torchvision.", r"unknown model 'torchvision\.'"),
    ("resnet34", r"unknown model 'resnet34'; known: \[.*\]; torchvision's is written 'torchvision\.resnet34'"),
    ("resnt", r"unknown model 'resnt'; known: \[.*\] \(did you mean 'resnet'\?\); or torchvision\.NAME"),
])
def test_unknown_zoo_names_are_refused_with_a_hint(name: str, pattern: str) -> None:
    import re

    problem = model_problem(name)
    assert problem is not None and re.search(pattern, problem), problem


def test_timm_models_need_timm() -> None:
    try:
        import timm  # noqa: F401
    except ImportError:
        assert "pip install 'hpsearch[timm]'" in model_problem("timm.resnet50")
    else:
        assert model_problem("timm.resnet50") is None


# ------------------------------------------------------------------------------------------------ plug-ins

PLUGIN = '''
from torch import nn

def tiny(num_classes, in_channels, image_size, width=4, dropout=0.0):
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Dropout(dropout), nn.Linear(width, num_classes))

def seen(**kwargs):
    seen.calls.append(kwargs)
    return nn.Sequential(nn.Flatten(), nn.Linear(kwargs["in_channels"] * kwargs["image_size"] ** 2, kwargs["num_classes"]))
seen.calls = []

def no_size(num_classes, in_channels):
    return nn.Linear(1, 1)

def needs_depth(num_classes, in_channels, image_size, depth):
    return nn.Linear(1, 1)

def not_a_model(num_classes, in_channels, image_size):
    return "a string"

NOT_CALLABLE = 3
'''


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch) -> str:
    """The name of a plug-in module written into tmp_path and importable."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    name = f"zoo_plugin_{abs(hash(str(tmp_path))) % 10**8}"  # a module of its own per test: no import cache
    (folder / f"{name}.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(folder))
    return name


def test_a_plugin_model_gets_hpsearchs_arguments_and_its_declared_parameters(plugin: str) -> None:
    module = plugin
    config = TrainConfig.from_settings({"model": f"{module}:seen", "dropout": 0.25}, {"width": 9, "lr": 0.01})
    model = build_model(config, input_shape=(1, 8, 8), num_classes=10)
    calls = import_factory(f"{module}:seen").calls
    # **kwargs takes hpsearch's arguments and the plug-in's own parameters; hpsearch's settings (dropout,
    # lr) go only to a factory that names them.
    assert calls[-1] == {"num_classes": 10, "in_channels": 1, "image_size": 8, "width": 9}
    assert _output(model, (1, 8, 8)).shape == (2, 10)

    tiny = build_model(TrainConfig.from_settings({"model": f"{module}:tiny"}, {"width": 6, "dropout": 0.5}),
                       input_shape=(3, 16, 16), num_classes=4)
    assert tiny[0].out_channels == 6 and tiny[4].p == 0.5


@pytest.mark.parametrize(("function", "parameters", "pattern"), [
    ("tiny", {"widht"}, r"does not accept the parameters \['widht'\]; its parameters: \['dropout', 'width'\]"),
    ("no_size", set(), r"must accept num_classes, in_channels, image_size.*\['image_size'\]"),
    ("needs_depth", set(), r"requires \['depth'\], which the spec does not set"),
    ("nothing", set(), r"has no 'nothing'; its functions: \[.*'tiny'.*\]"),
    ("NOT_CALLABLE", set(), r"NOT_CALLABLE is a int, not a function"),
])
def test_a_plugin_that_cannot_be_called_is_a_validation_problem(plugin: str, function: str,
                                                                   parameters: set[str], pattern: str) -> None:
    import re

    problems = check_model_factory(f"{plugin}:{function}", parameters)
    assert problems and re.search(pattern, problems[0]), problems


def test_a_missing_plugin_module_names_where_it_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match=rf"no module 'no_such_plugin' \(looked in {tmp_path}"):
        import_factory("no_such_plugin.models:net", paths=[str(tmp_path)])


def test_a_plugin_that_returns_no_module_fails_with_its_name(plugin: str) -> None:
    config = TrainConfig(model=f"{plugin}:not_a_model")
    with pytest.raises(TypeError, match=r"not_a_model' returned a str, not a torch.nn.Module"):
        build_model(config, input_shape=(1, 8, 8), num_classes=2)


def test_a_timm_model_where_timm_is_installed(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm", reason="timm is an optional extra (pip install 'hpsearch[timm]')")
    model = build_model(TrainConfig(model="timm.resnet18", freeze="backbone"), input_shape=(1, 28, 28), num_classes=5)
    assert _output(model, (1, 28, 28)).shape == (2, 5)
    assert {name for name, p in model.named_parameters() if p.requires_grad} == {"fc.weight", "fc.bias"}
    source = timm.create_model("resnet18")
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")
    loaded = build_model(TrainConfig(model="timm.resnet18", pretrained=True, weights_path=str(tmp_path / "resnet18.pth")),
                         input_shape=(1, 28, 28), num_classes=5)
    assert torch.equal(loaded.layer4[0].conv1.weight, source.layer4[0].conv1.weight)
    assert torch.allclose(loaded.conv1.weight, source.conv1.weight.sum(dim=1, keepdim=True))
    assert "weights_path" in weights_problem("timm.resnet18", None)
