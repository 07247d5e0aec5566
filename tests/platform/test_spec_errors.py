"""Bad specs: every problem is reported as a line naming the YAML path, the bad value and what is allowed.

No Ray and no MLflow here: `load_spec` only parses and validates, and `hpsearch validate` must not
start a search or touch a tracking store.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hpsearch.search_spaces.spec import SpecError, load_spec

HPSEARCH = [sys.executable, "-m", "hpsearch.platform.cli"]


def _write_spec(directory: Path, text: str, *, name: str = "spec.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def _file_pattern(pattern: str, path: Path) -> str:
    """Problems about the file as a whole start with the path the user gave."""
    return pattern.replace("{file}", re.escape(str(path)))


# --------------------------------------------------------------------------- one problem per spec

# Each spec has exactly one thing wrong; the pattern must match the start of its only problem line.
BAD_SPECS = [
    # Unknown keys, with a suggestion where the typo is close.
    pytest.param(
        """\
        name: bad
        serach: {algorithm: random}
        """,
        r"^serach: unknown key; allowed: \[.*'search'.*\] \(did you mean 'search'\?\)",
        id="unknown-top-level-key-did-you-mean",
    ),
    pytest.param(
        """\
        name: bad
        search: {algoritm: random}
        """,
        r"^search\.algoritm: unknown key; allowed: \[.*'algorithm'.*\] \(did you mean 'algorithm'\?\)",
        id="unknown-search-key-did-you-mean",
    ),
    pytest.param(
        """\
        name: bad
        search:
          scheduler: {name: asha, grace_perod: 2}
        """,
        r"^search\.scheduler\.grace_perod: unknown key; allowed: \[.*'grace_period'.*\] "
        r"\(did you mean 'grace_period'\?\)",
        id="unknown-scheduler-key-did-you-mean",
    ),
    pytest.param(
        """\
        name: bad
        tracking: {experimnt: mine}
        """,
        r"^tracking\.experimnt: unknown key; allowed: \['experiment', 'uri'\] \(did you mean 'experiment'\?\)",
        id="unknown-tracking-key-did-you-mean",
    ),
    pytest.param(
        """\
        description: a spec without a name
        """,
        r"^name: required, missing",
        id="name-missing",
    ),
    pytest.param(
        """\
        name: has spaces
        """,
        r"^name: 'has spaces' is not allowed: .*pattern",
        id="name-with-spaces",
    ),
    # Wrong types and out-of-range settings.
    pytest.param(
        """\
        name: bad
        search: {num_samples: many}
        """,
        r"^search\.num_samples: 'many' is not allowed: .*valid integer",
        id="num-samples-not-a-number",
    ),
    pytest.param(
        """\
        name: bad
        search: 3
        """,
        r"^search: 3 is not allowed: .*dictionary",
        id="section-is-a-scalar",
    ),
    pytest.param(
        """\
        name: bad
        search: {algorithm: tpee}
        """,
        r"^search\.algorithm: 'tpee' is not one of \['grid', 'random', 'optuna'\] \(did you mean 'optuna'\?\)$",
        id="unknown-algorithm-lists-allowed",
    ),
    pytest.param(
        """\
        name: bad
        tracking: {uri: "sqllite:///x.db"}
        """,
        r"^tracking\.uri: 'sqllite:///x\.db' is not an MLflow tracking URI; its scheme is one of \[.*'sqlite'.*\]"
        r".*\(did you mean 'sqlite'\?\)",
        id="tracking-uri-bad-scheme",
    ),
    pytest.param(
        """\
        name: bad
        search: {algorithm: tpee}
        """,
        r"^search\.algorithm: 'tpee' .*'grid'.*'random'.*'optuna'.*\(did you mean 'optuna'\?\)",
        id="unknown-algorithm-tpee-did-you-mean-optuna",
    ),
    pytest.param(
        """\
        name: bad
        search: {algorithm: optuan}
        """,
        r"^search\.algorithm: 'optuan' .*\(did you mean 'optuna'\?\)",
        id="unknown-algorithm-typo-did-you-mean",
    ),
    pytest.param(
        """\
        name: bad
        search:
          scheduler: {name: hyperband}
        """,
        r"^search\.scheduler\.name: 'hyperband' is not one of \['none', 'asha'\]",
        id="unknown-scheduler",
    ),
    pytest.param(
        """\
        name: bad
        search: {metric: val_acc}
        """,
        r"^search\.metric: unknown metric 'val_acc'; known: .*\(did you mean 'val_accuracy'\?\)",
        id="unknown-metric-did-you-mean",
    ),
    pytest.param(
        """\
        name: bad
        search: {mode: maximum}
        """,
        r"^search\.mode: 'maximum' is not one of \['max', 'min'\] \(did you mean 'max'\?\)",
        id="unknown-mode",
    ),
    pytest.param(
        """\
        name: bad
        dataset: {name: mnits}
        """,
        r"^dataset\.name: unknown dataset 'mnits'; known: \[.*'digits'.*\] "
        r"\(did you mean 'mnist'\?\)",
        id="unknown-dataset-did-you-mean",
    ),
    pytest.param(
        """\
        name: bad
        dataset: {val_fraction: 1.5}
        """,
        r"^dataset\.val_fraction: 1\.5 is not allowed: .*less than 1",
        id="val-fraction-above-one",
    ),
    pytest.param(
        """\
        name: bad
        train: {epochs: 0}
        """,
        r"^train\.epochs: 0 is not allowed: .*greater than or equal to 1",
        id="epochs-zero",
    ),
    pytest.param(
        """\
        name: bad
        train: {epochs: -3}
        """,
        r"^train\.epochs: -3 is not allowed: .*greater than or equal to 1",
        id="epochs-negative",
    ),
    pytest.param(
        """\
        name: bad
        train: {optimizer: sgdd}
        """,
        r"^train\.optimizer: unknown optimizer 'sgdd'; known: \[.*'adam'.*'sgd'\] "
        r"\(did you mean 'sgd'\?\)",
        id="unknown-optimizer-in-train",
    ),
    pytest.param(
        """\
        name: bad
        train: {lrr: 0.1}
        """,
        r"^train\.lrr: unknown key; allowed: \[.*'lr'.*\] \(did you mean 'lr'\?\)",
        id="unknown-train-key-did-you-mean",
    ),
    pytest.param(
        """\
        name: bad
        resources: {cpus: two}
        """,
        r"^resources\.cpus: 'two' is not allowed: .*valid number",
        id="cpus-not-a-number",
    ),
    pytest.param(
        """\
        name: bad
        resources: {gpus: -1}
        """,
        r"^resources\.gpus: -1 is not allowed: .*greater than or equal to 0",
        id="gpus-negative",
    ),
    # The space: parameter names.
    pytest.param(
        """\
        name: bad
        space:
          lrr: {loguniform: [0.001, 0.1]}
        """,
        r"^space\.lrr: unknown parameter 'lrr'; known: \[.*'lr'.*\] \(did you mean 'lr'\?\)",
        id="unknown-parameter-did-you-mean",
    ),
    pytest.param(
        """\
        name: bad
        space:
          learning_rate: {loguniform: [0.001, 0.1]}
        """,
        r"^space\.learning_rate: unknown parameter 'learning_rate'; known: \[.*'lr'.*\] \(did you mean 'lr'\?\)",
        id="unknown-parameter-learning-rate-did-you-mean-lr",
    ),
    pytest.param(
        """\
        name: bad
        space:
          model:
            choice:
              cnn: {chanels: {choice: [8, 16]}}
        """,
        r"^space\.model\.choice\.cnn\.chanels: unknown parameter 'chanels'; .*\(did you mean 'channels'\?\)",
        id="unknown-parameter-in-branch-did-you-mean",
    ),
    pytest.param(
        """\
        name: bad
        space:
          1st_layer: 3
        """,
        r"^space\.1st_layer: parameter names are identifiers .*'1st_layer'",
        id="parameter-name-not-identifier",
    ),
    pytest.param(
        """\
        name: bad
        space:
          lr: {loguniform: [0.001, 0.1]}
          model:
            choice:
              mlp: {lr: 0.01}
              cnn: {}
        """,
        r"^space\.model\.choice\.mlp\.lr: 'lr' is already a parameter of an enclosing level",
        id="parameter-repeated-in-branch",
    ),
    pytest.param(
        """\
        name: bad
        space:
          epochs: {int: [1, 5]}
        """,
        r"^space\.epochs: epochs is fixed per search; set train\.epochs instead",
        id="epochs-in-space",
    ),
    pytest.param(
        """\
        name: bad
        space: [lr, dropout]
        """,
        r"^space: expected a mapping of parameter names to distributions, got \['lr', 'dropout'\]",
        id="space-is-a-list",
    ),
    # The space: distribution mappings.
    pytest.param(
        """\
        name: bad
        space:
          lr: {uniform: [0.01, 0.1], loguniform: [0.01, 0.1]}
        """,
        r"^space\.lr: expected exactly one of \[.*'uniform'.*'loguniform'.*\].*got keys \['loguniform', 'uniform'\]",
        id="two-distribution-kinds",
    ),
    pytest.param(
        """\
        name: bad
        space:
          lr: {loguniformm: [0.001, 0.1]}
        """,
        r"^space\.lr: expected exactly one of \[.*\].*got keys \['loguniformm'\] \(did you mean 'loguniform'\?\)",
        id="unknown-distribution-kind-did-you-mean",
    ),
    pytest.param(
        """\
        name: bad
        space:
          lr: {}
        """,
        r"^space\.lr: expected exactly one of \[.*'choice'.*\].*got an empty mapping",
        id="empty-distribution-mapping",
    ),
    pytest.param(
        """\
        name: bad
        space:
          lr: {uniform: [0.1, 0.01]}
        """,
        r"^space\.lr\.uniform: low <= high must hold, got low=0\.1, high=0\.01",
        id="low-above-high",
    ),
    pytest.param(
        """\
        name: bad
        space:
          lr: {loguniform: [0, 0.1]}
        """,
        r"^space\.lr\.loguniform: loguniform needs low > 0, got low=0\b",
        id="loguniform-low-zero",
    ),
    pytest.param(
        """\
        name: bad
        space:
          weight_decay: {loguniform: [-0.001, 0.1]}
        """,
        r"^space\.weight_decay\.loguniform: loguniform needs low > 0, got low=-0\.001",
        id="loguniform-low-negative",
    ),
    pytest.param(
        """\
        name: bad
        space:
          lr: {uniform: [0.01, 0.05, 0.1]}
        """,
        r"^space\.lr\.uniform: expected \[low, high\], got \[0\.01, 0\.05, 0\.1\]",
        id="range-of-three",
    ),
    pytest.param(
        """\
        name: bad
        space:
          lr: {uniform: 0.1}
        """,
        r"^space\.lr\.uniform: expected \[low, high\], got 0\.1",
        id="range-a-scalar",
    ),
    pytest.param(
        """\
        name: bad
        space:
          depth: {int: [1.5, 4]}
        """,
        r"^space\.depth\.int: bounds and step must be integers, got 1\.5",
        id="int-bound-float",
    ),
    pytest.param(
        """\
        name: bad
        space:
          depth: {int: [1, 4.0]}
        """,
        r"^space\.depth\.int: bounds and step must be integers, got 4\.0",
        id="int-bound-float-that-looks-whole",
    ),
    pytest.param(
        """\
        name: bad
        space:
          depth: {int: [1, 4], step: -1}
        """,
        r"^space\.depth\.step: must be > 0, got -1",
        id="negative-step",
    ),
    pytest.param(
        """\
        name: bad
        space:
          batch_size: {choice: [32, 64], step: 32}
        """,
        r"^space\.batch_size\.step: only uniform, loguniform and int take a step, not choice",
        id="step-on-choice",
    ),
    pytest.param(
        """\
        name: bad
        space:
          lr: {uniform: [0.0, 0.1]}
        """,
        r"^space\.lr\.uniform: bound 0\.0 is not allowed for lr: .*greater than 0",
        id="range-bound-outside-parameter",
    ),
    # The space: choice values.
    pytest.param(
        """\
        name: bad
        space:
          batch_size: {choice: []}
        """,
        r"^space\.batch_size\.choice: empty; list at least one value",
        id="empty-choice-list",
    ),
    pytest.param(
        """\
        name: bad
        space:
          model: {choice: {}}
        """,
        r"^space\.model\.choice: empty; list at least one value",
        id="empty-choice-mapping",
    ),
    pytest.param(
        """\
        name: bad
        space:
          batch_size: {choice: 64}
        """,
        r"^space\.batch_size\.choice: expected a list of values .*got 64",
        id="choice-a-scalar",
    ),
    pytest.param(
        """\
        name: bad
        space:
          model: {choice: [mlp, cnnn]}
        """,
        r"^space\.model\.choice: 'cnnn' is not allowed for model: unknown model 'cnnn'; known: \[.*'cnn'.*\] "
        r"\(did you mean 'cnn'\?\)",
        id="unknown-model-in-choice-did-you-mean",
    ),
    pytest.param(
        """\
        name: bad
        space:
          model:
            choice:
              mlp: {}
              cnnn: {channels: 8}
        """,
        r"^space\.model\.choice: 'cnnn' is not allowed for model: unknown model 'cnnn'.*\(did you mean 'cnn'\?\)",
        id="unknown-model-as-branch-did-you-mean",
    ),
    pytest.param(
        """\
        name: bad
        space:
          optimizer: {choice: [sgd, adamm]}
        """,
        r"^space\.optimizer\.choice: 'adamm' is not allowed for optimizer: unknown optimizer 'adamm'; "
        r"known: \[.*'adam'.*'sgd'\] \(did you mean 'adam'\?\)",
        id="unknown-optimizer-in-choice",
    ),
    pytest.param(
        """\
        name: bad
        space:
          dropout: {choice: [0.1, 1.5]}
        """,
        r"^space\.dropout\.choice: 1\.5 is not allowed for dropout: .*less than 1",
        id="dropout-choice-out-of-range",
    ),
    pytest.param(
        """\
        name: bad
        space:
          momentum: 1.2
        """,
        r"^space\.momentum: 1\.2 is not allowed for momentum: .*less than 1",
        id="constant-out-of-range",
    ),
    # The space against the search algorithm: each message says what to write instead.
    pytest.param(
        """\
        name: bad
        search: {algorithm: optuna}
        space:
          batch_size: {grid: [32, 64]}
        """,
        r"^space\.batch_size: grid cannot run under search\.algorithm 'optuna'.*write choice: \[\.\.\.\] instead",
        id="grid-under-optuna",
    ),
    pytest.param(
        """\
        name: bad
        search: {algorithm: optuna}
        space:
          lr: {loguniform: [0.001, 0.1], step: 0.001}
        """,
        r"^space\.lr: Optuna cannot quantize a log scale; drop step",
        id="loguniform-step-under-optuna",
    ),
    pytest.param(
        """\
        name: bad
        search: {algorithm: grid}
        space:
          dropout: {uniform: [0.0, 0.5]}
        """,
        r"^space\.dropout: uniform cannot be enumerated by search\.algorithm 'grid'; "
        r"list the values with grid: \[\.\.\.\], add a step",
        id="continuous-uniform-under-grid",
    ),
    pytest.param(
        """\
        name: bad
        search: {algorithm: grid}
        space:
          lr: {loguniform: [0.001, 0.1]}
        """,
        r"^space\.lr: loguniform cannot be enumerated by search\.algorithm 'grid'; list the values with grid",
        id="loguniform-under-grid",
    ),
    # Bounds, steps and numbers that cannot run, and settings that contradict each other.
    pytest.param(
        """\
        name: bad
        space:
          lr: {loguniform: [0.001, .inf]}
        """,
        r"^space\.lr\.loguniform: bounds must be finite numbers, got low=0\.001, high=inf$",
        id="inf-bound",
    ),
    pytest.param(
        """\
        name: bad
        space:
          dropout: {uniform: [.nan, 0.5]}
        """,
        r"^space\.dropout\.uniform: bounds must be finite numbers, got low=nan, high=0\.5$",
        id="nan-bound",
    ),
    pytest.param(
        """\
        name: bad
        space:
          depth: {int: [-.inf, 3]}
        """,
        r"^space\.depth\.int: bounds and step must be integers, got -inf$",
        id="minus-inf-int-bound",
    ),
    pytest.param(
        """\
        name: bad
        space:
          seed: {int: [0, 100000000000000000000]}
        """,
        r"^space\.seed\.int: int bounds and step lie within \+-9,007,199,254,740,992 \(2\*\*53\)",
        id="int-bound-beyond-2-53",
    ),
    pytest.param(
        """\
        name: bad
        space:
          dropout: {uniform: [0.0, 0.5], step: .nan}
        """,
        r"^space\.dropout\.step: must be a finite number, got nan$",
        id="nan-step",
    ),
    pytest.param(
        """\
        name: bad
        space:
          depth: {int: [1, 4], step: 0}
        """,
        r"^space\.depth\.step: must be > 0, got 0$",
        id="zero-step",
    ),
    pytest.param(
        """\
        name: bad
        space:
          depth: {int: [1, 3], step: 5}
        """,
        r"^space\.depth\.step: 5 is wider than the range \[1, 3\], so no second value fits; a step is at most high - low \(2\)$",
        id="int-step-wider-than-range",
    ),
    pytest.param(
        """\
        name: bad
        space:
          weight_decay: {uniform: [0, 1], step: 2}
        """,
        r"^space\.weight_decay\.step: 2 is wider than the range \[0, 1\], so no second value fits",
        id="uniform-step-wider-than-range",
    ),
    pytest.param(
        """\
        name: bad
        space:
          channels: {int: [1, 10], step: 3}
        """,
        r"^space\.channels\.step: 3 does not fit the range \[1, 10\]: 1 is not a multiple of it; the bounds must be multiples of step$",
        id="bounds-not-multiples-of-step",
    ),
    pytest.param(
        """\
        name: bad
        space:
          dropout: {uniform: [0.05, 0.5], step: 0.1}
        """,
        r"^space\.dropout\.step: 0\.1 does not fit the range \[0\.05, 0\.5\]: 0\.05 is not a multiple of it",
        id="float-bounds-not-multiples-of-step",
    ),
    pytest.param(
        """\
        name: bad
        space:
          lr: .nan
        """,
        r"^space\.lr: nan is not allowed for lr: input should be a finite number$",
        id="nan-constant",
    ),
    pytest.param(
        """\
        name: bad
        space:
          grad_clip: {choice: [1.0, .inf]}
        """,
        r"^space\.grad_clip\.choice: inf is not allowed for grad_clip: input should be a finite number$",
        id="inf-choice-value",
    ),
    pytest.param(
        """\
        name: bad
        train: {grad_clip: .inf}
        """,
        r"^train\.grad_clip: inf is not allowed: input should be a finite number$",
        id="inf-in-train",
    ),
    pytest.param(
        """\
        name: bad
        dataset: {val_fraction: .nan}
        """,
        r"^dataset\.val_fraction: nan is not allowed: input should be a finite number$",
        id="nan-fraction",
    ),
    pytest.param(
        """\
        name: bad
        resources: {cpus: .inf}
        """,
        r"^resources\.cpus: inf is not allowed: input should be a finite number$",
        id="inf-cpus",
    ),
    pytest.param(
        """\
        name: bad
        resources: {cpus: 0}
        """,
        r"^resources\.cpus: 0 is not allowed: input should be greater than 0$",
        id="zero-cpus",
    ),
    pytest.param(
        """\
        name: bad
        resources: {cpus: 0.00001}
        """,
        r"^resources\.cpus: 1e-05 is less than 0\.0001, the smallest share of a CPU or GPU Ray allots$",
        id="cpus-below-ray-unit",
    ),
    pytest.param(
        """\
        name: bad
        resources: {gpus: 0.00001}
        """,
        r"^resources\.gpus: 1e-05 is less than 0\.0001",
        id="gpus-below-ray-unit",
    ),
    pytest.param(
        """\
        name: bad
        search: {seed: 4294967296}
        """,
        r"^search\.seed: 4294967296 is not allowed: input should be less than or equal to 4294967295$",
        id="search-seed-beyond-numpy",
    ),
    pytest.param(
        """\
        name: bad
        train: {seed: 4294967296}
        """,
        r"^train\.seed: 4294967296 is larger than 4294967295: seeds are at most 2\*\*32 - 1, as numpy takes them$",
        id="train-seed-beyond-numpy",
    ),
    pytest.param(
        """\
        name: bad
        search:
          scheduler: {name: asha, grace_period: 5}
        train: {epochs: 3}
        """,
        r"^search\.scheduler\.grace_period: 5 epochs is longer than train\.epochs \(3\); ASHA runs every trial for grace_period epochs, at most train\.epochs$",
        id="grace-period-longer-than-epochs",
    ),
    pytest.param(
        """\
        name: bad
        search: {metric: val_loss, mode: max}
        """,
        r"^search\.mode: 'max' would maximize val_loss, a loss; a loss is minimized: set mode: min$",
        id="loss-maximized",
    ),
    pytest.param(
        """\
        name: bad
        search: {metric: train_accuracy, mode: min}
        """,
        r"^search\.mode: 'min' would minimize train_accuracy, an accuracy; an accuracy is maximized: set mode: max$",
        id="accuracy-minimized",
    ),
    pytest.param(
        """\
        name: bad
        search: {num_samples: 200000}
        """,
        r"^search\.num_samples: 200,000 trials is more than the 100,000 a search may run; lower it, or omit it and set search\.time_budget to run as many as fit$",
        id="too-many-trials",
    ),
    pytest.param(
        """\
        name: bad
        search: {algorithm: grid, num_samples: 20}
        space:
          seed: {int: [0, 9999]}
        """,
        r"^search\.num_samples: 20 x a grid of 10,000 configurations is 200,000 trials, more than the 100,000 a search may run",
        id="grid-times-samples-too-many-trials",
    ),
    pytest.param(
        """\
        name: bad
        search: {algorithm: grid}
        space:
          seed: {int: [0, 9999]}
          channels: {int: [1, 1024]}
        """,
        r"^space: a grid of 10,240,000 configurations is more than the 100,000 trials a search may run; list fewer grid values, or sample them with search\.algorithm 'random'$",
        id="grid-too-many-trials",
    ),
    pytest.param(
        """\
        name: bad
        search: {time_budget: 2 hours}
        """,
        r"^search\.time_budget: '2 hours' is not a duration; write seconds \(e\.g\. 5400\) or a number with a unit",
        id="time-budget-not-a-duration",
    ),
    pytest.param(
        """\
        name: bad
        search: {time_budget: -1h}
        """,
        r"^search\.time_budget: '-1h' is not a duration",
        id="time-budget-negative",
    ),
    pytest.param(
        """\
        name: bad
        dataset: {root: ~nosuchuser-hpsearch/data}
        """,
        r"^dataset\.root: '~nosuchuser-hpsearch/data' cannot be a path \(.*\); root is the folder datasets are kept in$",
        id="dataset-root-unknown-user",
    ),
    pytest.param(
        """\
        name: bad
        search: {1: 2}
        """,
        r"^search\.1: 1 is not allowed: keys should be strings$",
        id="key-not-a-string",
    ),
    pytest.param(
        """\
        name: bad
        space: {"a\\nb": 1}
        """,
        r"^space\.'a\\nb': parameter names are identifiers \(letters, digits, _\), got 'a\\nb'$",
        id="parameter-name-with-a-line-break",
    ),
    # Image sizes a flattening classifier cannot take: refused before anything runs, as a trial would.
    pytest.param(
        """\
        name: bad
        train: {model: mlp}
        space: {eval_image_size: {choice: [null, 16]}}
        """,
        r"^train\.model: eval_image_size: model 'mlp' built for 8x8 images cannot take 16x16 ones \(.*\); models "
        r"that flatten the image into their classifier .* set train_image_size and eval_image_size alike$",
        id="eval-image-size-a-flattening-model-cannot-take",
    ),
    pytest.param(
        """\
        name: bad
        space: {model: {choice: {cnn: {}, lenet5: {}}}, train_image_size: {choice: [12, 16]}}
        """,
        r"^space\.model: eval_image_size: model 'lenet5' built for 12x12 images cannot take 8x8 ones",
        id="train-image-size-a-flattening-branch-cannot-take",
    ),
    pytest.param(
        """\
        name: bad
        train: {model: torchvision.vit_b_16}
        """,
        r"^train\.model: model 'torchvision\.vit_b_16' cannot take 1x8x8 images \(.*\); set train\.train_image_size "
        r"and train\.eval_image_size to a size it takes$",
        id="zoo-model-too-large-for-the-dataset's-images",
    ),
    pytest.param(
        """\
        name: bad
        train: {model: torchvision.vit_b_16, train_image_size: 32}
        """,
        r"^train\.model: eval_image_size: model 'torchvision\.vit_b_16' built for 32x32 images cannot take 8x8 ones",
        id="zoo-model-trained-at-a-size-evaluated-at-another",
    ),
]


def test_a_zoo_model_is_checked_at_the_image_sizes_it_trains_and_is_evaluated_at(tmp_path: Path) -> None:
    """digits' 8x8 images resized to 32x32 for training and evaluation: vit_b_16 takes them."""
    spec = load_spec(_write_spec(tmp_path, """\
        name: ok
        train: {model: torchvision.vit_b_16, train_image_size: 32, eval_image_size: 32}
        """))
    assert spec.train.model == "torchvision.vit_b_16"


@pytest.mark.parametrize(("text", "pattern"), BAD_SPECS)
def test_bad_spec_names_path_value_and_what_is_allowed(tmp_path: Path, text: str, pattern: str) -> None:
    spec_path = _write_spec(tmp_path, text)

    with pytest.raises(SpecError, match=pattern) as excinfo:
        load_spec(spec_path)

    assert len(excinfo.value.problems) == 1, excinfo.value.problems


def test_dataset_root_that_is_a_file(tmp_path: Path) -> None:
    data_file = tmp_path / "mnist.tar"
    data_file.write_bytes(b"not a folder")
    spec_path = _write_spec(tmp_path, f"name: bad\ndataset: {{name: mnist, root: '{data_file}'}}\n")

    with pytest.raises(SpecError, match=rf"^dataset\.root: '{re.escape(str(data_file))}' is a file, not a folder; "
                                        r"root is the folder datasets are kept in$") as excinfo:
        load_spec(spec_path)

    assert len(excinfo.value.problems) == 1, excinfo.value.problems


def test_a_problem_is_one_line_of_bounded_length_whatever_the_input(tmp_path: Path) -> None:
    spec_path = _write_spec(tmp_path, "name: bad\ndataset: {name: " + "x" * 5000 + "}\n")

    with pytest.raises(SpecError) as excinfo:
        load_spec(spec_path)

    (problem,) = excinfo.value.problems
    assert problem.startswith("dataset.name: unknown dataset 'xxx") and problem.endswith("...")
    assert len(problem) == 1000
    # Whatever a message quoted, each problem prints as one line.
    assert SpecError(["a\nb", "c\u2028d\re"]).problems == ["a\\nb", "c\\u2028d\\re"]


def test_thousands_of_problems_print_as_fifty_lines_and_a_count(tmp_path: Path) -> None:
    spec_path = _write_spec(tmp_path, "name: bad\nspace:\n" + "".join(f"  p{i}: 1\n" for i in range(3000)))

    with pytest.raises(SpecError) as excinfo:
        load_spec(spec_path)

    problems = excinfo.value.problems
    assert len(problems) == 51 and problems[0].startswith("space.p0: unknown parameter 'p0'")
    assert problems[-1] == "spec: 2,950 more problems not shown"


# --------------------------------------------------------------------------- the file itself

BAD_FILES = [
    pytest.param(None, r"^{file}: cannot read spec file \(No such file or directory\)", id="missing-file"),
    pytest.param(b"", r"^{file}: the spec is empty; it needs at least a name and a space", id="empty-file"),
    pytest.param(b"# only a comment\n\n", r"^{file}: the spec is empty", id="only-comments"),
    pytest.param(b"name: bad\nsearch:\n  algorithm: random: grid\n",
                 r"^{file}: invalid YAML at line 3, column 20: mapping values are not allowed",
                 id="invalid-yaml-with-line"),
    pytest.param(b"name: bad\nsearch:\n\talgorithm: random\n",
                 r"^{file}: invalid YAML at line 3, column 1: .*'\\t'", id="invalid-yaml-tab-indent"),
    pytest.param(b"- name: bad\n- space: {}\n", r"^{file}: a spec is a mapping of sections .*got a list",
                 id="list-instead-of-mapping"),
    pytest.param(b"just some words\n", r"^{file}: a spec is a mapping of sections .*got a str",
                 id="scalar-instead-of-mapping"),
    pytest.param(b"\x00\x01\x02name: bad\n", r"^{file}: not a YAML file \(binary content\)", id="binary-with-nul"),
    pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", r"^{file}: not a YAML file \(not UTF-8 text\)",
                 id="binary-png-header"),
    pytest.param(b"name: caf\xe9\n", r"^{file}: not a YAML file \(not UTF-8 text\)", id="latin1-not-utf8"),
]


@pytest.mark.parametrize(("content", "pattern"), BAD_FILES)
def test_bad_file_names_the_file(tmp_path: Path, content: bytes | None, pattern: str) -> None:
    spec_path = tmp_path / "spec.yaml"
    if content is not None:
        spec_path.write_bytes(content)

    with pytest.raises(SpecError, match=_file_pattern(pattern, spec_path)) as excinfo:
        load_spec(spec_path)

    assert len(excinfo.value.problems) == 1, excinfo.value.problems


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=_file_pattern(r"^{file}: cannot read spec file \(Is a directory\)", tmp_path)):
        load_spec(tmp_path)


BAD_BUILTINS = [
    pytest.param("digits-quik", r"^digits-quik: no such spec file or built-in spec; built-in: \[.*'digits-quick'.*\] "
                                r"\(did you mean 'digits-quick'\?\)", id="builtin-typo-did-you-mean"),
    pytest.param("cifar-everything", r"^cifar-everything: no such spec file or built-in spec; built-in: "
                                     r"\[.*'digits-quick'.*\]", id="builtin-unknown-lists-builtins"),
]


@pytest.mark.parametrize(("name", "pattern"), BAD_BUILTINS)
def test_unknown_builtin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, pattern: str) -> None:
    monkeypatch.chdir(tmp_path)  # no file of that name beside the test may turn it into a path

    with pytest.raises(SpecError, match=pattern):
        load_spec(name)


# --------------------------------------------------------------------------- --set overrides

BAD_OVERRIDES = [
    pytest.param(["nodot"], r"^--set 'nodot': expected dotted\.path=value, e\.g\. search\.num_samples=4",
                 id="override-without-equals"),
    pytest.param(["=3"], r"^--set '=3': expected dotted\.path=value", id="override-without-path"),
    pytest.param(["search..seed=1"], r"^--set 'search\.\.seed=1': expected dotted\.path=value",
                 id="override-empty-path-part"),
    pytest.param(["search.num_samples=[1"], r"^--set 'search\.num_samples=\[1': the value is not valid YAML",
                 id="override-value-not-yaml"),
    pytest.param(["search=3"], r"^search: 3 is not allowed: .*dictionary", id="override-section-to-scalar"),
    pytest.param(["search=3", "search.num_samples=2"],
                 r"^--set 'search\.num_samples=2': search is 3, not a mapping",
                 id="override-into-scalar-section"),
    pytest.param(["search.num_samples=0"], r"^search\.num_samples: 0 is not allowed: .*greater than or equal to 1",
                 id="override-bad-value"),
    pytest.param(["serach.num_samples=4"],
                 r"^serach: unknown key; allowed: \[.*\] \(did you mean 'search'\?\)",
                 id="override-unknown-section-did-you-mean"),
]


@pytest.mark.parametrize(("overrides", "pattern"), BAD_OVERRIDES)
def test_bad_override(tmp_path: Path, overrides: list[str], pattern: str) -> None:
    spec_path = _write_spec(tmp_path, "name: good\nsearch: {num_samples: 2}\n")

    with pytest.raises(SpecError, match=pattern) as excinfo:
        load_spec(spec_path, overrides=overrides)

    assert len(excinfo.value.problems) == 1, excinfo.value.problems


# --------------------------------------------------------------------------- all problems at once

MANY_PROBLEMS = """\
name: bad
serach: {algorithm: random}
train: {epochs: 0}
resources: {cpus: two}
space:
  lrr: {loguniform: [0.001, 0.1]}
  dropout: {choice: [0.1, 1.5]}
  depth: {int: [4, 1]}
"""


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    spec_path = _write_spec(tmp_path, MANY_PROBLEMS)

    with pytest.raises(SpecError) as excinfo:
        load_spec(spec_path)

    problems = excinfo.value.problems
    paths = sorted(problem.split(":", 1)[0] for problem in problems)
    assert paths == sorted(["serach", "train.epochs", "resources.cpus", "space.lrr",
                            "space.dropout.choice", "space.depth.int"]), problems
    assert str(excinfo.value).splitlines() == problems
    assert all("\n" not in problem for problem in problems)


# --------------------------------------------------------------------------- the CLI

def _validate(spec: str, *extra: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`hpsearch validate` as its own process, as a user runs it."""
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    return subprocess.run([*HPSEARCH, "validate", spec, *extra], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=env)


def _validate_here(spec: str, *extra: str, cwd: Path, capsys, monkeypatch) -> subprocess.CompletedProcess[str]:
    """The same command through the console script's `main`, in this process: no interpreter to start
    and nothing to import again, for the many cases that differ only in their input."""
    from hpsearch.platform.cli import main

    monkeypatch.chdir(cwd)
    capsys.readouterr()
    status = main(["validate", spec, *extra])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["hpsearch", "validate", spec, *extra], status, out, err)


def _files_under(directory: Path) -> list[str]:
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*"))


CLI_BAD_SPECS = [
    pytest.param("name: bad\nsearch: {algorithm: tpee}\n", [], 1, id="cli-unknown-algorithm"),
    pytest.param("name: bad\nspace: " + "[" * 5000 + "]" * 5000 + "\n", [], 1, id="cli-deep-nesting"),
    pytest.param("name: bad\na: &a [x, x, x, x, x, x, x, x, x, x]\n"
                 + "".join(f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi")),
                 [], 1, id="cli-alias-bomb"),
    pytest.param("name: bad\nsearch: {seed: 1}\nsearch: {seed: 2}\n", [], 1, id="cli-duplicate-key"),
    pytest.param("name: bad\nsearch: {metric: val_loss, mode: max, scheduler: {name: asha, grace_period: 9}}\n"
                 "train: {epochs: 3}\n", [], 2, id="cli-contradictions"),
    pytest.param("name: bad\nspace: {depth: {int: [1, 3], step: 5}, lr: {loguniform: [0.001, .inf]}}\n", [], 2,
                 id="cli-unfit-step-and-inf-bound"),
    pytest.param("name: good\n", ["--set", "search.time_budget=2 hours"], 1, id="cli-bad-time-budget"),
    pytest.param("name: good\n", ["--set", "space.lr=" + "[" * 100], 1, id="cli-override-too-deep"),
    pytest.param(MANY_PROBLEMS, [], 6, id="cli-many-problems"),
    pytest.param(b"\x00\x01binary", [], 1, id="cli-binary-file"),
    pytest.param("name: good\n", ["--set", "nodot"], 1, id="cli-bad-override"),
]


@pytest.mark.parametrize(("content", "extra", "expected_lines"), CLI_BAD_SPECS)
def test_cli_validate_bad_spec(tmp_path: Path, content: str | bytes, extra: list[str], expected_lines: int,
                               capsys, monkeypatch) -> None:
    spec_path = tmp_path / "spec.yaml"
    if isinstance(content, bytes):
        spec_path.write_bytes(content)
    else:
        spec_path.write_text(content)

    result = _validate_here("spec.yaml", *extra, cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)

    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == expected_lines, result.stderr
    assert all(line.startswith("error: ") for line in lines), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout == ""
    assert _files_under(tmp_path) == ["spec.yaml"]


def test_cli_validate_missing_file_writes_nothing(tmp_path: Path) -> None:
    result = _validate("nowhere.yaml", cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr == "error: nowhere.yaml: cannot read spec file (No such file or directory)\n"
    assert "Traceback" not in result.stdout
    assert _files_under(tmp_path) == []


def test_cli_validate_good_builtin_spec_writes_nothing(tmp_path: Path, capsys, monkeypatch) -> None:
    result = _validate_here("digits-quick", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)

    assert result.returncode == 0, result.stderr
    assert "name: digits-quick" in result.stdout
    assert "# ok: 10 trials, random search" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert _files_under(tmp_path) == []


@pytest.mark.parametrize("content", [
    pytest.param("name: bad\nspace: " + "[" * 5000 + "]" * 5000 + "\n", id="deep-nesting"),
    pytest.param("name: bad\nsearch: {num_samples: 200000}\n", id="too-many-trials"),
])
def test_cli_run_with_a_bad_spec_starts_and_writes_nothing(tmp_path: Path, content: str, capsys, monkeypatch) -> None:
    from hpsearch.platform.cli import main

    (tmp_path / "spec.yaml").write_text(content)
    monkeypatch.chdir(tmp_path)

    status = main(["run", "spec.yaml"])

    out, err = capsys.readouterr()
    assert status == 2 and out == "" and err.startswith("error: spec.yaml: refused" if "[" in content
                                                       else "error: search.num_samples: 200,000 trials")
    assert _files_under(tmp_path) == ["spec.yaml"]  # no mlflow.db, no hpsearch_results
