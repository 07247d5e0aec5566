"""The search spec: YAML parsed once, at the edge, into frozen typed models.

Every problem in a spec is reported at once, one line each, naming the YAML path, the bad value
and what is allowed; `SpecError.problems` holds the lines.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hpsearch.search_spaces.space import ALGORITHMS, SearchSpace, SpaceError, show_value, check_algorithm, parse_space
from hpsearch.trainables import DATASETS, EPOCH_METRICS, TrainConfig
from hpsearch._suggest import did_you_mean

BUILTIN_PACKAGE = "hpsearch.search_spaces"
# Set only by the spec's `train` section: a search's length and ASHA's budget are in epochs.
FIXED_ONLY = ("epochs",)
SCHEDULERS = ("none", "asha")
MODES = ("max", "min")


class SpecError(ValueError):
    """A spec that cannot run; `problems` has one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class DatasetSpec(_Frozen):
    name: str = "digits"
    root: str | None = None  # where torchvision datasets live; default ~/.cache/hpsearch/data
    download: bool = False  # fetch a torchvision dataset when it is not under root
    val_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)  # of the training split, for validation
    seed: int = Field(default=0, ge=0)  # of the train/validation split

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in DATASETS:
            raise ValueError(DATASETS.unknown_message(name))
        return name


def _one_of(value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{value!r} is not one of {list(allowed)}{did_you_mean(value, allowed)}")
    return value


class SchedulerSpec(_Frozen):
    name: str = "none"  # none | asha
    grace_period: int = Field(default=1, ge=1)  # epochs every trial runs before it can be stopped
    reduction_factor: float = Field(default=3.0, gt=1.0)  # 1/fraction of trials promoted per rung

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        return _one_of(name, SCHEDULERS)


class SearchSettings(_Frozen):
    algorithm: str = "random"  # grid | random | optuna
    metric: str = "val_accuracy"
    mode: str = "max"  # max | min
    num_samples: int = Field(default=None, ge=1, validate_default=False)  # trials (default 8); grid: repeats of the grid (default 1)
    max_concurrent: int = Field(default=2, ge=1)  # trials running at once
    seed: int = Field(default=0, ge=0)  # of the sampler: same seed, same configurations
    scheduler: SchedulerSpec = SchedulerSpec()
    max_failures: int = Field(default=1, ge=0)  # retries of a failed trial, from its checkpoint

    @model_validator(mode="after")
    def _default_samples(self) -> "SearchSettings":
        if self.num_samples is None:
            object.__setattr__(self, "num_samples", 1 if self.algorithm == "grid" else 8)
        return self

    @field_validator("algorithm")
    @classmethod
    def _known_algorithm(cls, algorithm: str) -> str:
        return _one_of(algorithm, ALGORITHMS)

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, mode: str) -> str:
        return _one_of(mode, MODES)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        if metric not in EPOCH_METRICS:
            raise ValueError(f"unknown metric {metric!r}; known: {list(EPOCH_METRICS)}"
                             f"{did_you_mean(metric, list(EPOCH_METRICS))}")
        return metric


class Resources(_Frozen):
    cpus: float = Field(default=1.0, gt=0.0)  # per trial; also the trial's torch threads
    gpus: float = Field(default=0.0, ge=0.0)  # per trial; fractions share one GPU


TRACKING_SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks")


class TrackingSpec(_Frozen):
    uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    experiment: str = Field(default="hpsearch", min_length=1)

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, uri: str | None) -> str | None:
        scheme = uri.split("://", 1)[0].split("+", 1)[0] if uri and "://" in uri else "file"
        if scheme not in TRACKING_SCHEMES:
            raise ValueError(f"{uri!r} is not an MLflow tracking URI; its scheme is one of {list(TRACKING_SCHEMES)} "
                             f"(e.g. sqlite:///mlflow.db or http://127.0.0.1:5000){did_you_mean(scheme, TRACKING_SCHEMES)}")
        return uri


class Spec(_Frozen):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    description: str = ""
    dataset: DatasetSpec = DatasetSpec()
    search: SearchSettings = SearchSettings()
    resources: Resources = Resources()
    train: TrainConfig = TrainConfig()
    tracking: TrackingSpec = TrackingSpec()
    space: SearchSpace = SearchSpace()

    @field_validator("space", mode="before")
    @classmethod
    def _parse_space(cls, raw: Any) -> SearchSpace:
        if isinstance(raw, SearchSpace):
            return raw
        return parse_space(raw, allowed=_space_parameters(), check_value=_check_train_value)

    @model_validator(mode="after")
    def _space_fits_algorithm(self) -> "Spec":
        problems = check_algorithm(self.space, self.search.algorithm)
        for name in FIXED_ONLY:
            problems += [f"{p.path}: {name} is fixed per search; set train.{name} instead"
                         for p in self.space.walk() if p.name == name]
        if problems:
            raise SpaceError(problems)
        return self

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data, space included, exactly as it would be written in YAML."""
        data = self.model_dump(mode="json", exclude={"space"})
        data["space"] = self._raw_space
        return data

    def spec_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:12]

    _raw_space: Any = None


def _space_parameters() -> dict[str, Any]:
    return dict(TrainConfig.model_fields)


def _check_train_value(name: str, value: Any) -> str | None:
    try:
        TrainConfig.model_validate({name: value})
    except ValidationError as error:
        return "; ".join(_clean_message(e["msg"]) for e in error.errors())
    return None


# --------------------------------------------------------------------------- loading

def load_spec(source: str | Path, *, overrides: list[str] | tuple[str, ...] = (),
              tracking_uri: str | None = None) -> Spec:
    """Read a spec from a YAML file or a built-in name, apply `--set` overrides, validate it."""
    raw = read_raw_spec(source)
    for override in overrides:
        apply_override(raw, override)
    if tracking_uri:
        raw.setdefault("tracking", {})
        if isinstance(raw["tracking"], dict):
            raw["tracking"]["uri"] = tracking_uri
    return validate_spec(raw)


def validate_spec(raw: Mapping[str, Any]) -> Spec:
    try:
        spec = Spec.model_validate(raw)
    except ValidationError as error:
        raise SpecError(_format_errors(error, raw)) from None
    except SpaceError as error:  # raised by an after-validator outside pydantic's wrapping
        raise SpecError(error.problems) from None
    object.__setattr__(spec, "_raw_space", copy.deepcopy(raw.get("space")))
    return spec


def read_raw_spec(source: str | Path) -> dict[str, Any]:
    path = resolve_spec_path(source)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SpecError([f"{source}: cannot read spec file ({error.strerror})"]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError([f"{source}: not a YAML file (not UTF-8 text)"]) from None
    if "\x00" in text:
        raise SpecError([f"{source}: not a YAML file (binary content)"])
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise SpecError([f"{source}: invalid YAML{where}: {problem}"]) from None
    if raw is None:
        raise SpecError([f"{source}: the spec is empty; it needs at least a name and a space"])
    if not isinstance(raw, dict):
        raise SpecError([f"{source}: a spec is a mapping of sections (name, dataset, search, space, ...), "
                         f"got a {type(raw).__name__}"])
    return raw


def resolve_spec_path(source: str | Path) -> Path:
    """A path to a YAML file, or the name of a built-in spec."""
    path = Path(source)
    if path.exists() or path.suffix in (".yaml", ".yml") or os.sep in str(source):
        return path
    builtin = resources.files(BUILTIN_PACKAGE) / f"{source}.yaml"
    if builtin.is_file():
        return Path(str(builtin))
    names = builtin_specs()
    raise SpecError([f"{source}: no such spec file or built-in spec; built-in: {names}{did_you_mean(source, names)}"])


def builtin_specs() -> list[str]:
    return sorted(entry.name[:-5] for entry in resources.files(BUILTIN_PACKAGE).iterdir()
                  if entry.name.endswith(".yaml"))


def apply_override(raw: dict[str, Any], override: str) -> None:
    """`dotted.path=value`, the value read as YAML (`4`, `0.1`, `[1, 2]`, `{choice: [a, b]}`)."""
    key, sep, text = override.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise SpecError([f"--set {override!r}: expected dotted.path=value, e.g. search.num_samples=4"])
    try:
        value = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        raise SpecError([f"--set {override!r}: the value is not valid YAML"]) from None
    parts = key.split(".")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[:depth + 1])
            raise SpecError([f"--set {override!r}: {where} is {child!r}, not a mapping"])
        node = child
    node[parts[-1]] = value


def _format_errors(error: ValidationError, raw: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    for item in error.errors():
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, SpaceError):
            problems.extend(cause.problems)
            continue
        loc = [str(part) for part in item["loc"]]
        path = ".".join(loc) or "spec"
        if item["type"] == "extra_forbidden":
            parent = _model_at(loc[:-1])
            known = sorted(parent.model_fields) if parent else []
            problems.append(f"{path}: unknown key; allowed: {known}{did_you_mean(loc[-1], known)}")
        elif item["type"] == "missing":
            problems.append(f"{path}: required, missing")
        else:
            shown, message = show_value(item.get("input")), _clean_message(item["msg"])
            # A message that already quotes the value reads better without repeating it.
            problems.append(f"{path}: {message}" if shown in message else f"{path}: {shown} is not allowed: {message}")
    return problems


def _model_at(loc: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] = Spec
    for part in loc:
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _clean_message(message: str) -> str:
    message = re.sub(r"^Value error, ", "", message)
    message = re.sub(r" or instance of \w+", "", message)  # pydantic names the model class
    return message[0].lower() + message[1:] if message else message


def dump_spec(spec: Spec) -> str:
    return yaml.safe_dump(spec.to_dict(), sort_keys=False)


__all__ = ["ALGORITHMS", "DatasetSpec", "Resources", "SchedulerSpec", "SearchSettings", "Spec",
           "SpecError", "TrackingSpec", "builtin_specs", "dump_spec", "load_spec", "validate_spec"]
