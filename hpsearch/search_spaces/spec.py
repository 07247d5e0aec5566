"""The search spec: YAML parsed once, at the edge, into frozen typed models.

Every problem in a spec is reported at once, one line each, naming the YAML path, the bad value
and what is allowed; `SpecError.problems` holds the lines.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, get_args

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hpsearch.search_spaces._safe_yaml import YamlRefused, load_yaml
from hpsearch.search_spaces.space import (ALGORITHMS, SearchSpace, SpaceError, check_algorithm, grid_size, parse_space,
                                          path_part, show_value)
from hpsearch.trainables import DATASETS, EPOCH_METRICS, TrainConfig
from hpsearch.trainables.cost import COSTS
from hpsearch.trainables.plugins import is_factory, spec_paths
from hpsearch._suggest import did_you_mean

BUILTIN_PACKAGE = "hpsearch.search_spaces"
# Set only by the spec's `train` section: a search's length and ASHA's budget are in epochs.
FIXED_ONLY = ("epochs",)
SCHEDULERS = ("none", "asha")
MODES = ("max", "min")
MAX_FILE_BYTES = 1 << 20  # a spec is a few KB; reading stops past this
MAX_TRIALS = 100_000  # per search: each trial is an MLflow run and a Tune trial held in memory
MAX_SEED = 2**32 - 1  # numpy's RandomState, under Ray's and Optuna's samplers, takes no larger seed
RESOURCE_UNIT = 0.0001  # Ray counts CPUs and GPUs in steps of this
MAX_PROBLEMS = 50  # lines printed for one spec; a hostile file can have thousands
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"\s*(?:(\d+(?:\.\d*)?|\.\d+)\s*([smhd])\s*)+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhd])")
# Characters str.splitlines() breaks at: a problem is printed as one line, whatever the input held.
_LINE_BREAKS = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


class SpecError(ValueError):
    """A spec that cannot run; `problems` has one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        problems = [_one_line(problem) for problem in problems[:MAX_PROBLEMS]] + (
            [f"spec: {len(problems) - MAX_PROBLEMS:,} more problems not shown"] if len(problems) > MAX_PROBLEMS else [])
        super().__init__("\n".join(problems))
        self.problems = problems


def _one_line(problem: str) -> str:
    """A problem as printed: its line breaks escaped, whatever the input held, and at most 1,000 characters."""
    problem = _LINE_BREAKS.sub(lambda match: repr(match.group())[1:-1], problem)
    return problem if len(problem) <= 1000 else problem[:997] + "..."


class _Frozen(BaseModel):
    # NaN and infinity are never a setting: `inf` cpus or a `.nan` fraction fail later, or never end.
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True, allow_inf_nan=False)


IMAGE_DATASET_FIELDS = ("test_fraction", "image_size", "channels", "mean", "std", "in_memory", "memory_budget",
                        "workers", "skip_corrupt", "flip")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([kmgt]?i?b?)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1 << 20, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class DatasetSpec(_Frozen):
    name: str = "digits"  # a built-in dataset, or imagefolder (root: a folder of class folders)
    root: str | None = None  # torchvision datasets: where they live (default ~/.cache/hpsearch/data); imagefolder: the tree
    download: bool = False  # fetch a torchvision dataset when it is not under root
    val_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)  # of the training split, for validation
    seed: int = Field(default=0, ge=0)  # of the train/validation split
    # ImageFolder trees and plug-in datasets
    test_fraction: float = Field(default=0.1, gt=0.0, lt=1.0)  # held out for test when there is no test/ folder
    image_size: int | None = Field(default=None, ge=4, le=4096)  # side of the square images; imagefolder: 224
    channels: Literal[1, 3] | None = None  # imagefolder: 3
    mean: list[float] | None = None  # per channel, in pixel units (0-255); default: from the training split
    std: list[float] | None = None
    in_memory: bool | Literal["auto"] = "auto"  # auto: in memory when the decoded images fit memory_budget
    memory_budget: int = 1 << 30  # bytes of decoded images a trial may hold; written 512MB, 2GB
    workers: int | None = Field(default=None, ge=0, le=256)  # loader processes per trial; default cpus - 1
    skip_corrupt: bool = False  # skip and count unreadable image files instead of stopping
    flip: bool = False  # mirrored images keep their class: augmentations may flip them
    factory: str | None = None  # a plug-in dataset: package.module:function returning train, val, test, classes
    args: dict[str, Any] = {}  # keyword arguments of the factory

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in DATASETS:
            raise ValueError(DATASETS.unknown_message(name))
        return name

    @field_validator("root")
    @classmethod
    def _a_folder(cls, root: str | None, info) -> str | None:
        if root is None:
            return None
        base = (info.context or {}).get("base_dir")
        if base is not None and not _is_absolute(root):
            root = str(Path(base) / root)
        problem = _folder_problem(root)
        if problem:
            raise ValueError(f"{_shown_source(root)!r} {problem}; root is the folder datasets are kept in")
        return root

    @field_validator("memory_budget", mode="before")
    @classmethod
    def _size(cls, value: Any) -> int:
        return parse_size(value)

    @field_validator("factory")
    @classmethod
    def _a_factory(cls, factory: str | None) -> str | None:
        from hpsearch.trainables.plugins import is_factory

        if factory is not None and not is_factory(factory):
            raise ValueError(f"{show_value(factory)} is not a plug-in reference; write package.module:function")
        return factory

    @model_validator(mode="after")
    def _fits(self, info) -> "DatasetSpec":
        problems = self.problems(info.context or {})
        if problems:
            raise SpaceError(problems)
        return self

    @property
    def is_image_source(self) -> bool:
        """An ImageFolder tree or a plug-in: not one of the four built-in datasets."""
        return self.factory is not None or self.name == "imagefolder"

    @property
    def shown_name(self) -> str:
        return self.factory or self.name

    def scan(self):
        """An ImageFolder tree's images, classes and split (cached: read once, when the spec is checked);
        DataError when it cannot be read."""
        from hpsearch.trainables.images import scan_imagefolder

        return scan_imagefolder(self.root, val_fraction=self.val_fraction, test_fraction=self.test_fraction,
                                seed=self.seed, skip_corrupt=self.skip_corrupt)

    def problems(self, context: Mapping[str, Any]) -> list[str]:
        problems: list[str] = []
        # Set to something other than its default (a dumped spec writes every default).
        chosen = {key for key in self.model_fields_set if getattr(self, key) != type(self).model_fields[key].default}
        if self.factory is not None and "name" in self.model_fields_set:
            problems.append(f"dataset.name: {self.name!r} and dataset.factory {self.factory!r} both name the "
                            f"dataset; keep one")
        if not self.is_image_source:
            problems += [f"dataset.{key}: applies to imagefolder and plug-in datasets, not the built-in "
                         f"{self.name!r}" for key in IMAGE_DATASET_FIELDS if key in chosen]
            if self.args:
                problems.append("dataset.args: applies to a plug-in dataset (dataset.factory)")
            return problems
        if self.factory is None and self.root is None:
            problems.append("dataset.root: required for imagefolder: the folder holding one folder per class "
                            "(or train/, val/ and test/ folders of them)")
        for key in ("mean", "std"):
            values = getattr(self, key)
            channels = self.channels or (3 if self.factory is None else None)
            if values is not None and channels is not None and len(values) != channels:
                problems.append(f"dataset.{key}: {len(values)} values for {channels} channels; give one per channel")
            if values is not None and key == "std" and any(value <= 0 for value in values):
                problems.append(f"dataset.std: {values} has a value <= 0; standard deviations are positive")
        if (self.mean is None) != (self.std is None):
            problems.append("dataset.mean and dataset.std: give both, or neither (then both are computed from the "
                            "training split)")
        if problems or context.get("check_data") is False:
            return problems
        if self.factory is not None:
            return _dataset_factory_problems(self.factory, self.args, context.get("plugin_paths", ()))
        from hpsearch.trainables.images import DataError

        if context.get("remote") and not Path(self.root).exists():
            return problems  # a folder the cluster's nodes share, not this machine: the job checks it there
        try:
            self.scan()
        except DataError as error:
            problems.append(str(error) if str(error).startswith("dataset.") else f"dataset.root: {error}")
        return problems


def _dataset_factory_problems(factory: str, args: Mapping[str, Any], paths) -> list[str]:
    import inspect

    from hpsearch.trainables.plugins import PluginError, import_factory

    try:
        function = import_factory(factory, paths=paths, what="dataset")
    except PluginError as error:
        return [f"dataset.factory: {error}"]
    try:
        inspect.signature(function).bind(**args)
    except TypeError as error:
        return [f"dataset.args: {factory} cannot be called with {sorted(args)} ({error})"]
    except ValueError:
        pass  # no signature to check: it is called as is
    return []


def parse_size(value: Any) -> int:
    """Bytes from a number of megabytes or a text such as 512MB, 2GB, 1.5GiB."""
    if isinstance(value, bool):
        raise ValueError(f"{show_value(value)} is not a size; write 512MB, 2GB or a number of megabytes")
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise ValueError(f"{show_value(value)} is not a size; write 512MB, 2GB or a number of megabytes")
        number, unit = float(match.group(1)), match.group(2).lower().rstrip("b").rstrip("i")
        if match.group(2).lower() in ("b",):
            unit = "b"
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{show_value(value)} is not allowed: a memory budget is more than 0 bytes")
    return int(number * _SIZE_UNITS[unit])


def _is_absolute(root: str) -> bool:
    try:
        return Path(root).expanduser().is_absolute()
    except (RuntimeError, ValueError):
        return True  # ~nosuchuser: the folder check names the problem


def _folder_problem(root: str) -> str | None:
    """Why `root` cannot be a dataset folder, or None: a folder that does not exist yet is made by a download."""
    try:
        path = Path(root).expanduser()
        if not path.exists():
            return None
        if not path.is_dir():
            return "is a file, not a folder"
        if not os.access(path, os.R_OK | os.X_OK):
            return "is a folder this user cannot read"
    except (OSError, ValueError, RuntimeError) as error:  # a NUL byte, a name too long, ~nosuchuser
        return f"cannot be a path ({error})"
    return None


def _one_of(value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{show_value(value)} is not one of {list(allowed)}{did_you_mean(value, allowed)}")
    return value


class SchedulerSpec(_Frozen):
    name: str = "none"  # none | asha
    grace_period: int = Field(default=1, ge=1)  # epochs every trial runs before it can be stopped
    reduction_factor: float = Field(default=3.0, gt=1.0)  # 1/fraction of trials promoted per rung

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        return _one_of(name, SCHEDULERS)


def _parse_constraint(text: str) -> str:
    from hpsearch.search_spaces.objectives import Constraint

    Constraint.parse(text)
    return text


ConstraintText = Annotated[str, AfterValidator(_parse_constraint)]


class Objective(_Frozen):
    """One of several objectives: a metric of training (val_accuracy, ...) or a cost (latency_ms, ...)."""

    metric: str
    mode: str  # max | min

    @field_validator("metric")
    @classmethod
    def _known(cls, metric: str) -> str:
        known = [*EPOCH_METRICS, *COSTS]
        if metric not in known:
            raise ValueError(f"unknown metric {show_value(metric)}; known: {known}{did_you_mean(metric, known)}")
        return metric

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, mode: str) -> str:
        return _one_of(mode, MODES)


class ReplicatesSpec(_Frozen):
    """Seed replicates: the top configurations trained again with new training seeds, split fixed."""

    top_k: int = Field(default=3, ge=1, le=20)  # configurations replicated, best first
    seeds: int = Field(default=5, ge=2, le=50)  # new training seeds each; two at least, for a spread


class SearchSettings(_Frozen):
    algorithm: str = "random"  # grid | random | optuna
    metric: str = "val_accuracy"
    mode: str = "max"  # max | min
    # Trials (default 8; with a time_budget, as many as fit); grid: repeats of the grid (default 1).
    num_samples: int | None = Field(default=None, ge=1)
    time_budget: float | None = None  # wall-clock seconds for the whole search; written 90s, 30m, 2h or 1h30m
    max_concurrent: int = Field(default=2, ge=1)  # trials running at once
    seed: int = Field(default=0, ge=0, le=MAX_SEED)  # of the sampler: same seed, same configurations
    scheduler: SchedulerSpec = SchedulerSpec()
    max_failures: int = Field(default=1, ge=0)  # retries of a failed trial, from its checkpoint
    # After the search: its top_k configurations again with `seeds` new training seeds each; the winner
    # is then the best mean over those seeds.
    replicates: ReplicatesSpec | None = None
    # Several objectives at once (the first is `metric`: a trial's best epoch, ASHA and `best` go by it),
    # and constraints on costs, e.g. "params <= 200000"; see search_spaces/objectives.py.
    objectives: list[Objective] | None = None
    constraints: list[ConstraintText] = []

    @model_validator(mode="after")
    def _first_objective_is_the_metric(self) -> "SearchSettings":
        if not self.objectives:
            return self
        first = self.objectives[0]
        if {"metric", "mode"} & self.model_fields_set and (self.metric, self.mode) != (first.metric, first.mode):
            return self  # set apart from the objectives: _objective_problems names it
        object.__setattr__(self, "metric", first.metric)
        object.__setattr__(self, "mode", first.mode)
        return self

    @property
    def constraint_list(self):
        from hpsearch.search_spaces.objectives import Constraint

        return [Constraint.parse(text) for text in self.constraints]

    @model_validator(mode="after")
    def _default_samples(self) -> "SearchSettings":
        if self.num_samples is None and not (self.time_budget is not None and self.algorithm != "grid"):
            object.__setattr__(self, "num_samples", 1 if self.algorithm == "grid" else 8)
        return self

    @field_validator("time_budget", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return None if value is None else parse_duration(value)

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
            raise ValueError(f"unknown metric {show_value(metric)}; known: {list(EPOCH_METRICS)}"
                             f"{did_you_mean(metric, list(EPOCH_METRICS))}")
        return metric


class Resources(_Frozen):
    cpus: float = Field(default=1.0, gt=0.0)  # per trial; also the trial's torch threads
    gpus: float = Field(default=0.0, ge=0.0)  # per trial; fractions share one GPU

    @field_validator("cpus", "gpus")
    @classmethod
    def _ray_quantity(cls, value: float) -> float:
        if 0 < value < RESOURCE_UNIT:
            raise ValueError(f"{value!r} is less than {RESOURCE_UNIT}, the smallest share of a CPU or GPU Ray allots")
        return value


class SpecTrainConfig(TrainConfig):
    """TrainConfig as a spec may set it: every number finite, seeds within what the samplers take."""

    model_config = ConfigDict(allow_inf_nan=False)

    @field_validator("seed")
    @classmethod
    def _seed_fits(cls, seed: int) -> int:
        if seed > MAX_SEED:
            raise ValueError(f"{seed!r} is larger than {MAX_SEED}: seeds are at most 2**32 - 1, as numpy takes them")
        return seed


def parse_duration(value: Any) -> float:
    """Seconds from a number of seconds or a text such as 90s, 30m, 2h, 1h30m or 1d."""
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
    elif isinstance(value, str) and _DURATION.fullmatch(value):
        seconds = sum(float(number) * DURATION_UNITS[unit] for number, unit in _DURATION_PART.findall(value))
    elif isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            pass
    if seconds is None:
        raise ValueError(f"{show_value(value)} is not a duration; write seconds (e.g. 5400) or a number with a unit "
                         f"s, m, h or d (e.g. 90s, 30m, 2h, 1h30m)")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{show_value(value)} is not allowed: a time budget is a finite duration of more than "
                         f"0 seconds (e.g. 90s, 30m, 2h)")
    return seconds


TRACKING_SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks")


class TrackingSpec(_Frozen):
    uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    experiment: str = Field(default="hpsearch", min_length=1)

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, uri: str | None) -> str | None:
        problem = tracking_uri_problem(uri) if uri else None
        if problem:
            raise ValueError(problem)
        return uri


def tracking_uri_problem(uri: str) -> str | None:
    """Why `uri` is no MLflow tracking URI hpsearch can use (a scheme MLflow has no store for), or None."""
    scheme = uri.split("://", 1)[0].split("+", 1)[0] if "://" in uri else "file"
    if scheme in TRACKING_SCHEMES:
        return None
    return (f"{show_value(uri)} is not an MLflow tracking URI; its scheme is one of {list(TRACKING_SCHEMES)} "
            f"(e.g. sqlite:///mlflow.db or http://127.0.0.1:5000){did_you_mean(scheme, TRACKING_SCHEMES)}")


class Spec(_Frozen):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    description: str = ""
    dataset: DatasetSpec = DatasetSpec()
    search: SearchSettings = SearchSettings()
    resources: Resources = Resources()
    train: SpecTrainConfig = SpecTrainConfig()
    tracking: TrackingSpec = TrackingSpec()
    # Folders (or packages, or modules) plug-in models and datasets are imported from, besides the
    # spec's own folder; relative to it. `hpsearch submit` ships them with the job.
    plugins: list[str] = []
    space: SearchSpace = SearchSpace()

    @field_validator("plugins")
    @classmethod
    def _plugins_exist(cls, entries: list[str], info) -> list[str]:
        base = (info.context or {}).get("base_dir")
        problems = []
        for index, entry in enumerate(entries):
            try:
                path = Path(entry).expanduser()
                path = Path(base) / path if base is not None and not path.is_absolute() else path
                found = path.is_dir() or (path.is_file() and path.suffix == ".py")
            except (OSError, ValueError, RuntimeError) as error:
                problems.append(f"plugins[{index}]: {show_value(entry)} cannot be a path ({error})")
                continue
            if not found:
                where = f" (relative to the spec's folder {base})" if base is not None else ""
                problems.append(f"plugins[{index}]: {show_value(entry)} is not a folder, package or .py module"
                                f"{where}; plugins lists where plug-in models and datasets are imported from")
        if problems:
            raise SpaceError(problems)
        return entries

    @field_validator("space", mode="before")
    @classmethod
    def _parse_space(cls, raw: Any, info) -> SearchSpace:
        if isinstance(raw, SearchSpace):
            return raw
        train = info.data.get("train")
        # A plug-in model's own parameters may be searched: names beyond TrainConfig's are checked
        # against the factories' signatures once the whole spec is read (_model_problems).
        open_names = _mentions_plugin_model(raw) or (train is not None and is_factory(train.model))
        return parse_space(raw, allowed=None if open_names else _space_parameters(), check_value=_check_train_value)

    @model_validator(mode="after")
    def _sections_agree(self, info) -> "Spec":
        """What each section allows alone but the sections together cannot run."""
        object.__setattr__(self, "_base_dir", (info.context or {}).get("base_dir"))
        problems = check_algorithm(self.space, self.search.algorithm)
        for name in FIXED_ONLY:
            problems += [f"{p.path}: {name} is fixed per search; set train.{name} instead"
                         for p in self.space.walk() if p.name == name]
        problems += _contradictions(self)
        if not problems:
            problems += _model_problems(self, info.context or {})
        if problems:
            raise SpaceError(problems)
        return self

    @property
    def spec_dir(self) -> str | None:
        """The folder of the spec file it was read from; None for a built-in spec or plain data."""
        return str(self._base_dir) if self._base_dir is not None else None

    @property
    def plugin_paths(self) -> list[str]:
        """Where this spec's plug-ins are imported from: its folder, then `plugins`."""
        return spec_paths(self._base_dir, self.plugins)

    def trial_count(self) -> int | None:
        """The trials the spec asks for; None when a time budget decides (as many as fit)."""
        if self.search.num_samples is None:
            return None
        if self.search.algorithm == "optuna":
            return self.search.num_samples
        return grid_size(self.space, self.search.algorithm) * self.search.num_samples

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data, space included, exactly as it would be written in YAML."""
        data = self.model_dump(mode="json", exclude={"space"})
        dataset = data["dataset"]
        if self.dataset.factory is not None:
            del dataset["name"]
        else:
            del dataset["factory"], dataset["args"]
        if not self.dataset.is_image_source:  # settings of image folders and plug-ins only
            for key in IMAGE_DATASET_FIELDS:
                del dataset[key]
        if not self.plugins:
            del data["plugins"]
        for key in ("replicates", "objectives", "constraints"):  # left out of a spec that does not use them
            if not data["search"][key]:
                del data["search"][key]
        data["space"] = self._raw_space
        return data

    def spec_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:12]

    _raw_space: Any = None
    _base_dir: Path | None = None  # the spec file's folder; None for a built-in spec


def _objective_problems(search: SearchSettings) -> list[str]:
    """Objectives that cannot work: too few or many, one twice, or a first one that is no metric of training."""
    objectives = search.objectives
    if objectives is None:
        return []
    problems = []
    metrics = [objective.metric for objective in objectives]
    if not 2 <= len(objectives) <= 4:
        problems.append(f"search.objectives: {len(objectives)} objective{'s' if len(objectives) != 1 else ''}; "
                        f"give 2 to 4 (one objective is search.metric and search.mode)")
    repeated = sorted({metric for metric in metrics if metrics.count(metric) > 1})
    if repeated:
        problems.append(f"search.objectives: {repeated} given more than once; each objective once")
    first = objectives[0] if objectives else None
    if first is not None and first.metric not in EPOCH_METRICS:
        problems.append(f"search.objectives.0.metric: {first.metric!r} is a cost, measured once; the first "
                        f"objective is the one a trial's best epoch{', ASHA' if search.scheduler.name == 'asha' else ''} "
                        f"and `best` go by: put a metric of training first, e.g. val_accuracy")
    for index, objective in enumerate(objectives[1:], start=1):
        if objective.metric in EPOCH_METRICS:
            problems.append(f"search.objectives.{index}.metric: {objective.metric!r} is a metric of training; the "
                            f"objectives after the first are costs, one of {list(COSTS)}")
    if first is not None and first.metric in EPOCH_METRICS and (search.metric, search.mode) != (first.metric, first.mode):
        problems.append(f"search.metric: {search.metric!r} ({search.mode}) is not the first objective, "
                        f"{first.metric!r} ({first.mode}); with objectives the first one is the metric: leave "
                        f"search.metric and search.mode out, or list that metric first")
    return problems


def _contradictions(spec: Spec) -> list[str]:
    search, problems = spec.search, []
    problems += _objective_problems(search)
    from hpsearch.search_spaces.objectives import impossible

    problems += [f"search.constraints: {problem}; no trial could be feasible"
                 for problem in impossible(search.constraint_list)]
    scheduler, epochs = search.scheduler, spec.train.epochs
    if scheduler.name == "asha" and scheduler.grace_period > epochs:
        problems.append(f"search.scheduler.grace_period: {scheduler.grace_period} epochs is longer than train.epochs "
                        f"({epochs}); ASHA runs every trial for grace_period epochs, at most train.epochs")
    for word, mode in (("a loss", "min"), ("an accuracy", "max")):
        if word.split()[1] in search.metric and search.mode != mode:
            verb = "maximize" if search.mode == "max" else "minimize"
            problems.append(f"search.mode: {search.mode!r} would {verb} {search.metric}, {word}; "
                            f"{word} is {mode}imized: set mode: {mode}")
    workers, cpus = spec.dataset.workers, spec.resources.cpus
    if workers and workers >= cpus:
        problems.append(f"dataset.workers: {workers} loader processes need resources.cpus of at least {workers + 1} "
                        f"(it is {cpus:g}): a trial's loader processes come out of its cpus, and one more trains")
    count = spec.trial_count()
    if count is not None and count > MAX_TRIALS:
        samples, configurations = search.num_samples, count // search.num_samples
        if configurations == 1:
            problems.append(f"search.num_samples: {_shown_count(count)} trials is more than the {MAX_TRIALS:,} a "
                            f"search may run; lower it, or omit it and set search.time_budget to run as many as fit")
        elif samples == 1:
            problems.append(f"space: a grid of {_shown_count(count)} configurations is more than the {MAX_TRIALS:,} "
                            f"trials a search may run; list fewer grid values, or sample them with search.algorithm "
                            f"'random'")
        else:
            problems.append(f"search.num_samples: {_shown_count(samples)} x a grid of {_shown_count(configurations)} "
                            f"configurations is {_shown_count(count)} trials, more than the {MAX_TRIALS:,} a search "
                            f"may run; list fewer grid values, or sample them with search.algorithm 'random'")
    return problems


def _shown_count(count: int) -> str:
    """1,234,567, or about 1e4000 for a number too long to print (Python refuses past 4,300 digits)."""
    return f"{count:,}" if count < 10**15 else f"about 1e{int(count.bit_length() * math.log10(2))}"


def _mentions_plugin_model(raw: Any) -> bool:
    """Whether a raw space may pick a plug-in model (`model: pkg.module:function`, or among its choices)."""
    model = raw.get("model") if isinstance(raw, Mapping) else None
    if is_factory(model):
        return True
    if isinstance(model, Mapping):
        values = next((model[kind] for kind in ("choice", "grid") if kind in model), None)
        return any(is_factory(value) for value in (values or ()) if isinstance(value, str))
    return False


def _model_options(spec: Spec) -> list[tuple[str, set[str], str, bool]]:
    """(model, plug-in parameters it is searched with, where, whether it may be pretrained) for every
    model the search can build."""
    def extras(space: SearchSpace) -> set[str]:
        return {p.name for p in space.walk() if p.name not in TrainConfig.model_fields}

    def pretrained(space: SearchSpace) -> bool | None:
        values = [value for p in space.walk() if p.name == "pretrained" for value in p.values]
        return (True in values) if values else None

    fixed = set(spec.train.model_args)
    model_param = next((p for p in spec.space.params if p.name == "model"), None)
    if model_param is None:
        searched = pretrained(spec.space)
        return [(spec.train.model, fixed | extras(spec.space), "train.model",
                 spec.train.pretrained if searched is None else searched)]
    outside = SearchSpace(tuple(p for p in spec.space.params if p.name != "model"))
    options = []
    for value in model_param.values:
        branch = (model_param.branches or {}).get(value, SearchSpace())
        searched = pretrained(SearchSpace(outside.params + branch.params))
        options.append((value, fixed | extras(outside) | extras(branch), model_param.path,
                        spec.train.pretrained if searched is None else searched))
    return options


def _model_problems(spec: Spec, context: Mapping[str, Any]) -> list[str]:
    """A model the search can pick but cannot build: a plug-in that cannot be imported or does not take
    its parameters, a parameter no model takes, pretrained weights that are not on disk, images too
    small for an architecture."""
    from hpsearch.trainables.zoo import model_problem

    problems: list[str] = []
    paths = spec.plugin_paths
    for model, parameters, where, pretrained in _model_options(spec):
        if not isinstance(model, str) or model_problem(model):
            continue  # reported with the value itself
        problems += [f"{where}: {problem}" for problem in _one_model_problems(
            spec, model, parameters, pretrained=pretrained, paths=paths, check=context.get("check_data") is not False,
            remote=bool(context.get("remote")))]
    return problems


def _one_model_problems(spec: Spec, model: str, parameters: set[str], *, pretrained: bool, paths: list[str],
                        check: bool, remote: bool = False) -> list[str]:
    from hpsearch.trainables.plugins import check_model_factory
    from hpsearch.trainables.zoo import NO_WEIGHTS, ZOOS_PREFIXES, weights_problem

    if pretrained and not model.startswith(ZOOS_PREFIXES):
        return [NO_WEIGHTS.format(model=model)]
    if is_factory(model):
        return check_model_factory(model, parameters, paths=paths) if check else []
    if parameters:
        return [f"{sorted(parameters)} are not hpsearch settings, and model {model!r} takes no plug-in parameters; "
                f"set them under a plug-in model's branch of the space"]
    if not check:
        return []
    if pretrained and not remote:  # a job's nodes read the weights from their own disks: checked there
        problem = weights_problem(model, spec.train.weights_path)
        if problem:
            return [problem]
    problem = _shape_problem(spec, model) or _image_size_problem(spec, model)
    return [problem] if problem else []


def _native_shape(spec: Spec) -> tuple[int, int, int] | None:
    """The dataset's images as models take them, where it is known before the data is read."""
    dataset = spec.dataset
    if dataset.is_image_source:
        if dataset.factory is not None and not (dataset.image_size and dataset.channels):
            return None
        return (dataset.channels or 3, dataset.image_size or 224, dataset.image_size or 224)
    return BUILTIN_SHAPES.get(dataset.name)


def _image_size_problem(spec: Spec, model: str) -> str | None:
    """Why a built-in `model` built for the train_image_size a search can pick cannot take the
    eval_image_size it can pick (a classifier that flattens the image takes one size): the check a
    trial makes when it starts, made now on torch's meta device for every pair of sizes."""
    from hpsearch.trainables.recipe import size_problem

    native = _native_shape(spec)
    if native is None or model.startswith(("torchvision.", "timm.")):
        return None
    for trained_at, shape in _image_shapes(spec, native, resized_only=True):
        detail = _meta_forward(spec, model, trained_at, shape)
        if detail:
            return size_problem(model, trained_at=trained_at, shape=shape, detail=detail)
    return None


def _image_shapes(spec: Spec, native: tuple[int, ...], *, resized_only: bool = False) -> list[tuple[tuple, tuple]]:
    """Every (shape a model is built and trained at, shape it is evaluated at) the search can pick, from
    the train_image_size and eval_image_size it sets or searches; with resized_only, none when it sets
    neither (the images' own shape only)."""
    import itertools

    from hpsearch.trainables.recipe import image_shape

    def sizes(field: str) -> list[int | None]:
        searched = [value for p in spec.space.walk() if p.name == field for value in p.values]
        return sorted({value or None for value in searched} or {getattr(spec.train, field) or None},
                      key=lambda value: value or 0)

    pairs = list(itertools.product(sizes("train_image_size"), sizes("eval_image_size")))
    if resized_only and pairs == [(None, None)]:
        return []
    return [(image_shape(native, train), image_shape(native, evaluated)) for train, evaluated in pairs]


BUILTIN_SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


def _shape_problem(spec: Spec, model: str) -> str | None:
    """Why `model` cannot take the dataset's images, found by a forward pass on torch's meta device
    (no memory, no compute); None when it can, or when the shape is known only at run time."""
    native = _native_shape(spec) if model.startswith("torchvision.") else None
    if native is None:
        return None
    for trained_at, shape in _image_shapes(spec, native):
        detail = _meta_forward(spec, model, trained_at, shape)
        if detail and trained_at != shape:
            from hpsearch.trainables.recipe import size_problem

            return size_problem(model, trained_at=trained_at, shape=shape, detail=detail)
        if detail:
            fix = ("raise dataset.image_size" if spec.dataset.is_image_source
                   else "set train.train_image_size and train.eval_image_size to a size it takes")
            return f"model {model!r} cannot take {shape[0]}x{shape[1]}x{shape[2]} images ({detail}); {fix}"
    return None


def _meta_forward(spec: Spec, model: str, built_at: tuple[int, ...], shape: tuple[int, ...]) -> str | None:
    """What `model`, built with the spec's settings for images of `built_at`, raises on a batch of
    `shape` on torch's meta device (no memory, no compute), as one line; None when it takes it, or
    when the meta device lacks an operation it uses (nothing learned)."""
    import torch

    from hpsearch.trainables.models import build_model

    config = spec.train.model_copy(update={"model": model, "pretrained": False})
    try:
        with torch.device("meta"):
            built = build_model(config, input_shape=built_at, num_classes=2)
            built.eval()
            built(torch.empty(2, *built_at))
            if shape != built_at:
                built(torch.empty(2, *shape))
    except NotImplementedError:
        return None
    except Exception as error:  # noqa: BLE001  (whatever the architecture raises, it would raise in every trial)
        return str(error).splitlines()[0] if str(error) else type(error).__name__
    return None


BUILTIN_CLASSES = {"digits": 10, "mnist": 10, "fashion_mnist": 10, "cifar10": 10}


def drawn_costs(spec: Spec, *, draws: int = 24, budget_s: float = 3.0) -> list[dict[str, float]] | None:
    """params, macs and size_mb of up to `draws` configurations drawn from the space (seeded by
    search.seed), counted from shapes on torch's meta device, within about `budget_s` seconds; None when
    the images' shape or the classes are known only when the data is read. A model that cannot be
    built on the meta device is left out."""
    import random
    import time

    import torch

    from hpsearch.search_spaces.space import draw_configuration
    from hpsearch.trainables.cost import shape_costs
    from hpsearch.trainables.models import build_model
    from hpsearch.trainables.recipe import image_shape

    native, classes = _native_shape(spec), _class_count(spec)
    if native is None or classes is None:
        return None
    rng, deadline, costs = random.Random(spec.search.seed), time.monotonic() + budget_s, []
    train = spec.train.model_dump()
    for _ in range(draws):
        if time.monotonic() > deadline:
            break
        try:
            config = TrainConfig.from_settings(train, draw_configuration(spec.space, rng))
            config = config.model_copy(update={"pretrained": False})
            with torch.device("meta"):
                model = build_model(config, input_shape=image_shape(native, config.train_image_size),
                                    num_classes=classes)
                costs.append(shape_costs(model, image_shape(native, config.eval_image_size),
                                         prune_amount=config.prune_amount))
        except Exception:  # noqa: BLE001  (a plug-in model the meta device cannot build: measured at run time)
            continue
    return costs


def _class_count(spec: Spec) -> int | None:
    dataset = spec.dataset
    if not dataset.is_image_source:
        return BUILTIN_CLASSES.get(dataset.name)
    if dataset.factory is not None:
        return None
    from hpsearch.trainables.images import DataError

    try:
        return len(dataset.scan().classes)
    except DataError:  # a folder the cluster's nodes share, not this machine's
        return None


def _space_parameters() -> dict[str, Any]:
    return dict(TrainConfig.model_fields)


def _check_train_value(name: str, value: Any) -> str | None:
    if name not in TrainConfig.model_fields:
        return None  # a plug-in model's own parameter: its factory says what it takes
    try:
        SpecTrainConfig.model_validate({name: value})
    except ValidationError as error:
        return "; ".join(_clean_message(e["msg"]) for e in error.errors())
    return None


# --------------------------------------------------------------------------- loading

def load_spec(source: str | Path, *, overrides: list[str] | tuple[str, ...] = (),
              tracking_uri: str | None = None, remote: bool = False) -> Spec:
    """Read a spec from a YAML file or a built-in name, apply `--set` overrides, validate it.

    Paths in a spec file (dataset.root, plugins) are relative to its folder, where its plug-ins are
    imported from too. `remote`: the spec runs elsewhere (`hpsearch submit`): a dataset folder or
    pretrained weights that are not on this machine are checked where it runs."""
    raw = read_raw_spec(source)
    for override in overrides:
        apply_override(raw, override)
    if tracking_uri:
        raw.setdefault("tracking", {})
        if isinstance(raw["tracking"], dict):
            raw["tracking"]["uri"] = tracking_uri
    path = resolve_spec_path(source)
    builtin = path.parent == Path(str(resources.files(BUILTIN_PACKAGE)))
    return validate_spec(raw, base_dir=None if builtin else path.resolve().parent, remote=remote)


def validate_spec(raw: Mapping[str, Any], *, base_dir: str | Path | None = None, check_data: bool = True,
                  remote: bool = False) -> Spec:
    """The spec `raw` describes, or SpecError. `base_dir`: the folder relative paths and plug-ins are
    found in; `check_data`: also read the dataset's folder and import its plug-ins (what validate does)."""
    base = Path(base_dir) if base_dir is not None else None
    listed = raw.get("plugins") if isinstance(raw.get("plugins"), list) else []
    try:
        paths = spec_paths(base, [entry for entry in listed if isinstance(entry, str)])
    except (OSError, ValueError, RuntimeError):  # a NUL byte, ~nosuchuser: the plugins field says so
        paths = spec_paths(base, [])
    context = {"base_dir": base, "check_data": check_data, "remote": remote, "plugin_paths": paths}
    try:
        spec = Spec.model_validate(raw, context=context)
    except ValidationError as error:
        raise SpecError(_format_errors(error, raw)) from None
    except SpaceError as error:  # raised by an after-validator outside pydantic's wrapping
        raise SpecError(error.problems) from None
    object.__setattr__(spec, "_raw_space", copy.deepcopy(raw.get("space")))
    return spec


def read_raw_spec(source: str | Path) -> dict[str, Any]:
    shown = _shown_source(source)
    path = resolve_spec_path(source)
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)  # /dev/zero, or a file of gigabytes, is not read to its end
    except (OSError, ValueError) as error:
        raise SpecError([f"{shown}: cannot read spec file ({getattr(error, 'strerror', None) or error})"]) from None
    if len(data) > MAX_FILE_BYTES:
        raise SpecError([f"{shown}: larger than {MAX_FILE_BYTES:,} bytes, the most a spec file may be "
                         f"(a spec is a few KB of YAML)"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError([f"{shown}: not a YAML file (not UTF-8 text)"]) from None
    if "\x00" in text:
        raise SpecError([f"{shown}: not a YAML file (binary content)"])
    try:
        raw = load_yaml(text)
    except yaml.YAMLError as error:
        raise SpecError([f"{shown}: {_yaml_problem(error)}"]) from None
    if raw is None:
        raise SpecError([f"{shown}: the spec is empty; it needs at least a name and a space"])
    if not isinstance(raw, dict):
        raise SpecError([f"{shown}: a spec is a mapping of sections (name, dataset, search, space, ...), "
                         f"got a {type(raw).__name__}"])
    return raw


def _yaml_problem(error: yaml.YAMLError) -> str:
    """`invalid YAML at line 3, column 20: what`, or `refused at ...` for valid YAML beyond a spec's limits."""
    where, problem = _where_and_what(error)
    return f"{'refused' if isinstance(error, YamlRefused) else 'invalid YAML'}{' ' + where if where else ''}: {problem}"


def _override_problem(override: str, error: yaml.YAMLError) -> str:
    where, problem = _where_and_what(error)
    verdict = "is refused" if isinstance(error, YamlRefused) else "is not valid YAML"
    return f"--set {show_value(override)}: the value {verdict} ({where + ': ' if where else ''}{problem})"


def _where_and_what(error: yaml.YAMLError) -> tuple[str, str]:
    mark = getattr(error, "problem_mark", None)
    where = f"at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    context, context_mark = getattr(error, "context", None), getattr(error, "context_mark", None)
    if context:  # "expected a single document in the stream at line 1, but found another document"
        problem = f"{context}{f' at line {context_mark.line + 1}' if context_mark else ''}, {problem}"
    return where, problem


def _shown_source(source: str | Path) -> str:
    text = str(source)
    return text if len(text) <= 200 else text[:197] + "..."


def resolve_spec_path(source: str | Path) -> Path:
    """A path to a YAML file, or the name of a built-in spec."""
    path = Path(source)
    try:
        if path.exists() or path.suffix in (".yaml", ".yml") or os.sep in str(source):
            return path
        builtin = resources.files(BUILTIN_PACKAGE) / f"{source}.yaml"
        if builtin.is_file():
            return Path(str(builtin))
    except (OSError, ValueError) as error:  # a name too long for the file system, a NUL byte
        raise SpecError([f"{_shown_source(source)}: cannot read spec file "
                         f"({getattr(error, 'strerror', None) or error})"]) from None
    names = builtin_specs()
    raise SpecError([f"{_shown_source(source)}: no such spec file or built-in spec; built-in: {names}"
                     f"{did_you_mean(source, names)}"])


def builtin_specs() -> list[str]:
    return sorted(entry.name[:-5] for entry in resources.files(BUILTIN_PACKAGE).iterdir()
                  if entry.name.endswith(".yaml"))


def apply_override(raw: dict[str, Any], override: str) -> None:
    """`dotted.path=value`, the value read as YAML (`4`, `0.1`, `[1, 2]`, `{choice: [a, b]}`)."""
    key, sep, text = override.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise SpecError([f"--set {show_value(override)}: expected dotted.path=value, e.g. search.num_samples=4"])
    try:
        value = load_yaml(text) if text else None
    except yaml.YAMLError as error:
        raise SpecError([_override_problem(override, error)]) from None
    parts = key.split(".")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[:depth + 1])
            raise SpecError([f"--set {show_value(override)}: {where} is {show_value(child)}, not a mapping"])
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
        path = ".".join(path_part(part) for part in item["loc"]) or "spec"
        if item["type"] == "extra_forbidden":
            parent = _model_at(loc[:-1])
            known = sorted(parent.model_fields) if parent else []
            problems.append(f"{path}: unknown key; allowed: {known}{did_you_mean(loc[-1], known)}" if known
                            else f"{path}: unknown key")
        elif item["type"] == "missing":
            problems.append(f"{path}: required, missing")
        else:
            shown, message = show_value(item.get("input")), _clean_message(item["msg"])
            problems.append(f"{path}: {message}" if _quotes(message, item.get("input"), shown)
                            else f"{path}: {shown} is not allowed: {message}")
    return problems


def _quotes(message: str, value: Any, shown: str) -> bool:
    """Whether a message already quotes the value (it reads better without repeating it); a number
    counts only at the start: "greater than 0" does not quote a 0."""
    if message.startswith(shown):
        return True
    return isinstance(value, str) and (shown in message or repr(value) in message)


def _model_at(loc: list[str]) -> type[BaseModel] | None:
    """The model whose keys sit at `loc` (list indices skipped: search.objectives.0 is an Objective)."""
    model: type[BaseModel] = Spec
    for part in loc:
        if part.isdigit():
            continue
        field = model.model_fields.get(part)
        found = _model_in(field.annotation) if field else None
        if found is None:
            return None
        model = found
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model an annotation holds: `X`, `X | None`, `list[X]` or `list[X] | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


def _clean_message(message: str) -> str:
    """pydantic's "Input should be ..." fits after `path: ` in lower case; a validator's own message,
    after "Value error, ", is kept as written (it may start with a value: True, None)."""
    ours = message.startswith("Value error, ")
    message = re.sub(r"^Value error, ", "", message)
    message = re.sub(r" or instance of \w+", "", message)  # pydantic names the model class
    return message if ours or not message else message[0].lower() + message[1:]


def dump_spec(spec: Spec) -> str:
    return yaml.safe_dump(spec.to_dict(), sort_keys=False)


__all__ = ["ALGORITHMS", "DatasetSpec", "Resources", "SchedulerSpec", "SearchSettings", "Spec",
           "SpecError", "TrackingSpec", "builtin_specs", "dump_spec", "load_spec", "validate_spec"]
