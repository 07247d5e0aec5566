"""Plug-ins: a user's own model or dataset, named `package.module:function` in a spec.

A plug-in module is imported from the spec's folder, the folders a spec lists under `plugins`,
or anything already importable (an installed package). The same paths travel with a search to
its trial processes, and with `hpsearch submit` to a cluster.
"""
from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

FACTORY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
# What hpsearch passes every plug-in model, besides the space parameters it declares.
MODEL_ARGUMENTS = ("num_classes", "in_channels", "image_size")


class PluginError(ValueError):
    """A plug-in that cannot be used; one line naming it and why."""


def is_factory(name: object) -> bool:
    return isinstance(name, str) and bool(FACTORY.match(name))


def add_paths(paths: Iterable[str]) -> None:
    """Put plug-in folders on this process's import path (first, in order), once each."""
    for path in reversed([str(path) for path in paths]):
        if path not in sys.path:
            sys.path.insert(0, path)


def import_factory(reference: str, *, paths: Iterable[str] = (), what: str = "factory") -> Callable[..., Any]:
    """The function `package.module:function` names, imported after adding `paths`; PluginError says why not."""
    if not is_factory(reference):
        raise PluginError(f"{reference!r} is not a plug-in reference; write package.module:function")
    paths = list(paths)
    add_paths(paths)
    module_name, function_name = reference.split(":")
    where = f"looked in {', '.join(paths)} and the installed packages" if paths else "looked in the installed packages"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            raise PluginError(f"{what} {reference!r}: no module {error.name!r} ({where})") from None
        raise PluginError(f"{what} {reference!r}: importing {module_name} failed: {error}") from None
    except Exception as error:  # noqa: BLE001  (the user's module failed on import: say how, in one line)
        detail = str(error).splitlines()[0] if str(error) else ""
        raise PluginError(f"{what} {reference!r}: importing {module_name} raised {type(error).__name__}"
                          f"{': ' + detail if detail else ''}") from None
    function = getattr(module, function_name, None)
    if function is None:
        known = sorted(name for name, value in vars(module).items() if callable(value) and not name.startswith("_"))
        raise PluginError(f"{what} {reference!r}: {module_name} has no {function_name!r}; its functions: {known}")
    if not callable(function):
        raise PluginError(f"{what} {reference!r}: {function_name} is a {type(function).__name__}, not a function")
    return function


def accepted(function: Callable[..., Any]) -> tuple[set[str], bool]:
    """The keyword arguments `function` takes by name, and whether it takes any (**kwargs)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return set(), True  # a builtin without a signature: it is called, and says itself what it refuses
    names = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names, any(p.kind is p.VAR_KEYWORD for p in parameters)


def required(function: Callable[..., Any]) -> set[str]:
    """Arguments `function` cannot be called without."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return set()
    return {p.name for p in parameters if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def check_model_factory(reference: str, parameters: Iterable[str], *, paths: Iterable[str] = ()) -> list[str]:
    """Problems with calling plug-in model `reference` with hpsearch's arguments and `parameters`."""
    try:
        function = import_factory(reference, paths=paths, what="model")
    except PluginError as error:
        return [str(error)]
    names, any_keyword = accepted(function)
    problems = []
    missing = [name for name in MODEL_ARGUMENTS if name not in names and not any_keyword]
    if missing:
        problems.append(f"model {reference!r} must accept {', '.join(MODEL_ARGUMENTS)} as keyword arguments "
                        f"(hpsearch passes them); it does not take {missing}")
    refused = sorted(set(parameters) - names) if not any_keyword else []
    if refused:
        shown = sorted(names - set(MODEL_ARGUMENTS))
        problems.append(f"model {reference!r} does not accept the parameters {refused}; its parameters: {shown}")
    unset = sorted(required(function) - set(MODEL_ARGUMENTS) - set(parameters))
    if unset:
        problems.append(f"model {reference!r} requires {unset}, which the spec does not set; set them in "
                        f"train.model_args or the space")
    return problems


def spec_paths(base: Path | None, listed: Iterable[str]) -> list[str]:
    """Where a spec's plug-ins are imported from: its folder first, then the `plugins` it lists
    (relative to its folder); for a package folder, the folder holding it."""
    paths: list[str] = []
    if base is not None:
        paths.append(str(base))
    for entry in listed:
        path = Path(entry).expanduser()
        path = (base / path if base is not None and not path.is_absolute() else path).resolve()
        paths.append(str(path.parent if (path / "__init__.py").is_file() or path.suffix == ".py" else path))
    return list(dict.fromkeys(paths))
