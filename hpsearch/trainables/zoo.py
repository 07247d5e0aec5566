"""Models from outside hpsearch's registry: torchvision's classification zoo, timm's (when installed),
and plug-in factories (`package.module:function`).

A zoo model gets a new classifier head for the dataset's classes and, for 1-channel images, a
first convolution that takes one channel (pretrained RGB filters summed over their channels).
Pretrained weights are read from disk, never downloaded: torch hub's cache, where torchvision
itself keeps them, or `weights_path`.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hpsearch._suggest import did_you_mean

ZOOS_PREFIXES = ("torchvision.", "timm.")
NO_WEIGHTS = ("pretrained: model {model!r} has no published weights; pretrained applies to torchvision.NAME and "
              "timm.NAME models")
HEAD_ATTRIBUTE = "_hpsearch_head"  # the name of the module that is the classifier head, set on the model


def model_problem(name: object) -> str | None:
    """Why `name` is not a model hpsearch can build, or None."""
    from hpsearch.trainables.config import MODELS
    from hpsearch.trainables.plugins import is_factory

    if not isinstance(name, str):
        return f"model names are text, got {name!r}"
    if name in MODELS or is_factory(name):
        return None
    zoo, _, builder = name.partition(".")
    if zoo == "torchvision" and builder:
        names = torchvision_models()
        if builder not in names:
            return (f"unknown model {name!r}: torchvision has no classification model {builder!r}"
                    f"{did_you_mean(builder, names)}; `hpsearch list models` lists them")
        return None
    if zoo == "timm" and builder:
        try:
            import timm
        except ImportError:
            return f"model {name!r} needs timm, which is not installed: pip install 'hpsearch[timm]'"
        if not timm.is_model(builder):
            return f"unknown model {name!r}: timm has no model {builder!r}{did_you_mean(builder, timm.list_models())}"
        return None
    known = MODELS.names()
    if name in torchvision_models():
        return f"unknown model {name!r}; known: {known}; torchvision's is written 'torchvision.{name}'"
    return (f"unknown model {name!r}; known: {known}{did_you_mean(name, known)}; or torchvision.NAME "
            f"(e.g. torchvision.resnet50; `hpsearch list models`), timm.NAME, or a plug-in package.module:function")


@functools.lru_cache(maxsize=1)
def torchvision_models() -> list[str]:
    import torchvision.models

    return list(torchvision.models.list_models(module=torchvision.models))


def weights_file(name: str, weights_path: str | None) -> Path:
    """Where the pretrained weights of zoo model `name` are read from."""
    if weights_path:
        return Path(weights_path).expanduser()
    zoo, _, builder = name.partition(".")
    if zoo == "timm":
        raise ValueError("a timm model's pretrained weights are read from weights_path (timm itself keeps the ones "
                         "it downloads in ~/.cache/huggingface)")
    import torchvision.models

    url = torchvision.models.get_model_weights(builder).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def weights_problem(name: str, weights_path: str | None) -> str | None:
    """Why the pretrained weights of `name` cannot be read, or None."""
    try:
        path = weights_file(name, weights_path)
    except ValueError as error:
        return f"pretrained {name}: {error}"
    except KeyError as error:
        return f"model {name!r} has no published weights ({error})"
    if not path.is_file():
        where = "weights_path" if weights_path else "torch hub's cache, $TORCH_HOME/hub/checkpoints"
        fetch = (f"python -c \"import torchvision; torchvision.models.get_model('{name.partition('.')[2]}', "
                 f"weights='DEFAULT')\" downloads it there" if name.startswith("torchvision.") and not weights_path
                 else "copy the file there")
        return (f"pretrained weights of {name} not found: looked for {path} ({where}); {fetch} (on a machine with "
                f"internet), or set weights_path")
    return None


def build_zoo_model(config, *, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    zoo, _, builder = config.model.partition(".")
    channels = input_shape[0]
    if zoo == "timm":
        import timm

        options: dict[str, Any] = {}
        if config.pretrained:  # timm reads the file, adapts the first conv to the channels, drops the old head
            problem = weights_problem(config.model, config.weights_path)
            if problem:
                raise FileNotFoundError(problem)
            options = {"pretrained": True,
                       "pretrained_cfg_overlay": {"file": str(weights_file(config.model, config.weights_path))}}
        model = timm.create_model(builder, num_classes=num_classes, in_chans=channels, drop_rate=config.dropout,
                                  **options)
        setattr(model, HEAD_ATTRIBUTE, _timm_head(model))
        return model
    import torchvision.models

    if not config.pretrained:
        model = torchvision.models.get_model(builder, weights=None, num_classes=num_classes,
                                             **_builder_options(builder, config, input_shape))
        head = _head_name(model, num_classes)
    else:
        model = torchvision.models.get_model(builder, weights=None, **_builder_options(builder, config, input_shape))
        path = weights_file(config.model, config.weights_path)
        problem = weights_problem(config.model, config.weights_path)
        if problem:
            raise FileNotFoundError(problem)
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        head = _replace_head(model, num_classes)
    if channels != 3:
        _adapt_stem(model, channels)
    if config.dropout and head:
        parent, leaf = _parent(model, head)
        setattr(parent, leaf, nn.Sequential(nn.Dropout(config.dropout), getattr(parent, leaf)))
        head = f"{head}.1"
    setattr(model, HEAD_ATTRIBUTE, head)
    return model


def _builder_options(builder: str, config, input_shape) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if builder.startswith("vit_") and input_shape[1] != 224:
        options["image_size"] = input_shape[1]  # a ViT's position embeddings are sized for its images
    if builder in ("googlenet", "inception_v3"):
        options["aux_logits"] = False
        options["init_weights"] = not config.pretrained
    return options


def _classifier_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1))]


def _head_name(model: nn.Module, num_classes: int) -> str:
    """The last layer that outputs the classes: a Linear, or squeezenet's 1x1 conv."""
    for name, module in reversed(_classifier_layers(model)):
        if getattr(module, "out_features", getattr(module, "out_channels", None)) == num_classes:
            return name
    return ""


def _replace_head(model: nn.Module, num_classes: int) -> str:
    """Swap the pretrained 1,000-class head for a new one of `num_classes` outputs; returns its name."""
    name, old = next(((name, module) for name, module in reversed(_classifier_layers(model))), ("", None))
    if old is None:
        raise ValueError("no classifier head (a Linear or 1x1 conv layer) to replace")
    if isinstance(old, nn.Linear):
        new: nn.Module = nn.Linear(old.in_features, num_classes)
    else:
        new = nn.Conv2d(old.in_channels, num_classes, kernel_size=1)
    parent, leaf = _parent(model, name)
    setattr(parent, leaf, new)
    return name


def _adapt_stem(model: nn.Module, channels: int) -> None:
    """The first convolution takes `channels` inputs; RGB filters are summed (pretrained) or made anew."""
    name, conv = next(((name, module) for name, module in model.named_modules() if isinstance(module, nn.Conv2d)),
                      ("", None))
    if conv is None or conv.in_channels == channels:
        return
    new = nn.Conv2d(channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                    dilation=conv.dilation, groups=1, bias=conv.bias is not None, padding_mode=conv.padding_mode)
    with torch.no_grad():
        if channels == 1:
            new.weight.copy_(conv.weight.sum(dim=1, keepdim=True))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    parent, leaf = _parent(model, name)
    setattr(parent, leaf, new)


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    *path, leaf = name.split(".")
    parent = model
    for part in path:
        parent = getattr(parent, part)
    return parent, leaf


def _timm_head(model: nn.Module) -> str:
    classifier = model.get_classifier()
    return next((name for name, module in model.named_modules() if module is classifier), "")


def build_plugin_model(config, *, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    from hpsearch.trainables.config import TrainConfig
    from hpsearch.trainables.plugins import accepted, import_factory

    function = import_factory(config.model, what="model")
    names, any_keyword = accepted(function)
    settings = {name: getattr(config, name) for name in TrainConfig.model_fields
                if name in names and name not in ("model", "model_args")}
    model = function(num_classes=num_classes, in_channels=input_shape[0], image_size=input_shape[1],
                     **settings, **dict(config.model_args))
    if not isinstance(model, nn.Module):
        raise TypeError(f"model {config.model!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def list_zoo_models() -> list[str]:
    names = [f"torchvision.{name}" for name in torchvision_models()]
    try:
        import timm
    except ImportError:
        return names
    return names + [f"timm.{name}" for name in timm.list_models()]
