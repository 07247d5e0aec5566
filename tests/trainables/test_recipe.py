"""The modern recipe's knobs and pruning on real tensors and real digits: TrivialAugment, random erasing,
MixUp and CutMix, repeated augmentation, EMA of the weights, train and eval image sizes, pruning."""
from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from hpsearch.search_spaces.spec import SpecError, validate_spec
from hpsearch.trainables import TrainConfig, TrainingSession, load_dataset
from hpsearch.trainables.augment import build_augmentation, erase_random_boxes
from hpsearch.trainables.cost import static_costs
from hpsearch.trainables.evaluate import evaluate_on_test
from hpsearch.trainables.precision import Precision
from hpsearch.trainables.pruning import Pruner, prunable_count, prunable_layers, sparsity
from hpsearch.trainables.recipe import BatchMixer, repeated_order

torch.set_num_threads(1)

QUICK = {"channels": 8, "batch_size": 32, "lr": 0.01}
DETERMINISTIC_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _uint8_batch(count: int, shape: tuple[int, int, int], seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (count, *shape), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _trained(config: TrainConfig, data, epochs: int | None = None) -> TrainingSession:
    session = TrainingSession(config, data=data)
    for _ in range(config.epochs if epochs is None else epochs):
        session.run_epoch()
    return session


def _through_bytes(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


# ----------------------------------------------------------------------------------------------- TrivialAugment

def test_trivialaugment_is_torchvisions_op_per_image_seeded_by_the_generator() -> None:
    from torchvision.transforms import v2

    images = _uint8_batch(16, (3, 32, 32))
    augment = build_augmentation("trivialaugment", input_shape=(3, 32, 32), dataset="mnist")  # no flips
    global_state = torch.get_rng_state()
    out = augment(images, torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), global_state)  # dropout's generator is left alone
    assert out.dtype == torch.uint8 and out.shape == images.shape

    # The same: one TrivialAugmentWide call per image, in a global generator seeded by one draw.
    seed = int(torch.randint(2**62, (), generator=torch.Generator().manual_seed(7)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transform = v2.TrivialAugmentWide()
        expected = torch.stack([transform(image) for image in images])
    assert torch.equal(out, expected)
    assert torch.equal(augment(images, torch.Generator().manual_seed(7)), out)
    assert not torch.equal(augment(images, torch.Generator().manual_seed(8)), out)


def test_trivialaugment_draws_an_op_for_each_image() -> None:
    image = _uint8_batch(1, (1, 28, 28))
    batch = image.expand(32, -1, -1, -1).clone()
    out = build_augmentation("trivialaugment", input_shape=(1, 28, 28), dataset="mnist")(
        batch, torch.Generator().manual_seed(0))
    distinct = {bytes(sample.numpy()) for sample in out}
    assert len(distinct) > 8  # one op and strength per image, not one for the batch


def test_trivialaugment_flips_only_where_the_dataset_allows() -> None:
    assert build_augmentation("trivialaugment", input_shape=(3, 32, 32), dataset="cifar10").flip
    assert not build_augmentation("trivialaugment", input_shape=(1, 28, 28), dataset="mnist").flip
    assert build_augmentation("trivialaugment", input_shape=(1, 8, 8), dataset="digits", flip=True).flip


# ----------------------------------------------------------------------------------------------- random erasing

def test_random_erasing_sets_one_box_per_image_to_the_mean() -> None:
    batch = torch.ones(64, 3, 28, 28)
    out = erase_random_boxes(batch, 1.0, torch.Generator().manual_seed(0))
    for image in out:
        erased = (image == 0).all(dim=0)
        assert (image == 0).any(dim=0).equal(erased)  # every channel of the box
        rows, cols = erased.any(dim=1).nonzero().flatten(), erased.any(dim=0).nonzero().flatten()
        assert len(rows) and len(cols)
        box = erased[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert box.all()  # one solid rectangle
        assert 0.02 * 784 * 0.5 <= int(erased.sum()) <= 0.33 * 784 * 1.5  # of torchvision's scale, rounded
    assert torch.equal(erase_random_boxes(batch, 1.0, torch.Generator().manual_seed(0)), out)
    assert not torch.equal(erase_random_boxes(batch, 1.0, torch.Generator().manual_seed(1)), out)


def test_random_erasing_follows_its_probability() -> None:
    batch = torch.ones(400, 1, 8, 8)
    erased = (erase_random_boxes(batch, 0.5, torch.Generator().manual_seed(0)) == 0).flatten(1).any(dim=1)
    assert 150 <= int(erased.sum()) <= 250
    assert torch.equal(erase_random_boxes(batch, 0.0, torch.Generator().manual_seed(0)), batch)


# ----------------------------------------------------------------------------------------------- MixUp, CutMix

def test_mixup_mixes_each_image_with_its_neighbour_by_its_target_share() -> None:
    images = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(8)  # all different: each row's two shares are readable
    mixer = BatchMixer(mixup_alpha=0.4, cutmix_alpha=0.0, num_classes=10)
    mixed, soft = mixer(images, labels, torch.Generator().manual_seed(3))
    assert soft.shape == (8, 10) and torch.allclose(soft.sum(dim=1), torch.ones(8))
    lam = soft[torch.arange(8), labels]
    assert torch.allclose(mixed, lam.view(-1, 1, 1, 1) * images + (1 - lam.view(-1, 1, 1, 1)) * images.roll(1, 0),
                          atol=1e-6)
    assert torch.allclose(soft[torch.arange(8), labels.roll(1)], 1 - lam)
    again, soft_again = mixer(images, labels, torch.Generator().manual_seed(3))
    assert torch.equal(again, mixed) and torch.equal(soft_again, soft)


def test_cutmix_pastes_a_box_whose_area_is_the_neighbours_share() -> None:
    images = torch.arange(8.0).view(8, 1, 1, 1).expand(8, 1, 16, 16).clone()  # image i is all i
    labels = torch.arange(8)
    mixed, soft = BatchMixer(mixup_alpha=0.0, cutmix_alpha=1.0, num_classes=8)(images, labels,
                                                                               torch.Generator().manual_seed(5))
    assert torch.allclose(soft.sum(dim=1), torch.ones(8))
    from_neighbour = (mixed == images.roll(1, 0)).float().mean(dim=(1, 2, 3))
    assert torch.allclose(from_neighbour, soft[torch.arange(8), labels.roll(1)], atol=1e-6)
    assert set(mixed.unique().tolist()) <= set(range(8))  # pasted, not blended


def test_with_both_alphas_each_batch_is_mixed_one_way_or_the_other() -> None:
    images = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 8, 8).clone()
    mixer = BatchMixer(mixup_alpha=1.0, cutmix_alpha=1.0, num_classes=4)
    generator = torch.Generator().manual_seed(0)
    kinds = set()
    for _ in range(20):
        mixed, soft = mixer(images, torch.arange(4), generator)
        assert torch.allclose(soft.sum(dim=1), torch.ones(4))
        pasted = set(mixed.unique().tolist()) <= {0.0, 1.0, 2.0, 3.0}
        kinds.add("cutmix" if pasted else "mixup")
    assert kinds == {"cutmix", "mixup"}


def test_training_with_mixup_takes_the_soft_target_loss_with_label_smoothing(digits) -> None:
    # One step an epoch, so the epoch's train_loss is that step's loss.
    config = TrainConfig(epochs=1, mixup_alpha=0.4, cutmix_alpha=1.0, label_smoothing=0.1,
                         **{**QUICK, "batch_size": len(digits.train)})
    replay = TrainingSession(config, data=digits)
    order = torch.randperm(len(digits.train), generator=replay.batch_order)
    inputs, hard, soft = replay._training_batch(digits.train.images[order], digits.train.labels[order])
    replay.model.train()
    logits = replay.model(inputs).detach()
    smoothed = soft * 0.9 + 0.1 / 10  # label smoothing over the soft targets, as torch defines it
    expected = float(-(smoothed * F.log_softmax(logits, dim=1)).sum(dim=1).mean())
    assert torch.equal(hard, soft.argmax(1)) and not torch.equal(soft, F.one_hot(hard, 10).float())

    trained = _trained(config, digits)
    reported = trained.history[0]["train_loss"]
    hard_loss = float(F.cross_entropy(logits, digits.train.labels[order], label_smoothing=0.1))
    # An untrained model's losses are all near log(10): the soft-target loss is exact, the hard one far off.
    assert abs(reported - expected) < 1e-5 * expected and abs(reported - hard_loss) > 1e-4


# ----------------------------------------------------------------------------------------------- repeated augmentation

@pytest.mark.parametrize("count, repetitions", [(12, 3), (10, 3), (9, 1)])
def test_repeated_order_repeats_each_sample_and_keeps_the_length(count: int, repetitions: int) -> None:
    order = torch.randperm(count, generator=torch.Generator().manual_seed(0))
    repeated = repeated_order(order, repetitions)
    assert len(repeated) == count
    kept = math.ceil(count / repetitions)
    assert repeated.unique().numel() == kept
    assert torch.equal(repeated, order[:kept].repeat_interleave(repetitions)[:count])  # copies side by side
    counts = torch.bincount(repeated, minlength=count)
    assert (counts[order[:count // repetitions]] == repetitions).all()


def test_repeated_augment_keeps_the_steps_and_augments_each_copy_anew(digits) -> None:
    config = TrainConfig(epochs=1, augment="light", repeated_augment=3, **QUICK)
    session = _trained(config, digits)
    steps = math.ceil(len(digits.train) / config.batch_size)
    assert all(int(state["step"]) == steps for state in session.optimizer.state.values())

    fresh = TrainingSession(config, data=digits)
    order = repeated_order(torch.randperm(len(digits.train), generator=fresh.batch_order), 3)
    assert torch.equal(order[0:3], order[0].repeat(3))
    inputs, _, _ = fresh._training_batch(digits.train.images[order[:3]], digits.train.labels[order[:3]])
    assert not (torch.equal(inputs[0], inputs[1]) and torch.equal(inputs[1], inputs[2]))


# ----------------------------------------------------------------------------------------------- EMA

def test_ema_weights_differ_and_are_what_validation_and_the_saved_model_use(digits) -> None:
    config = TrainConfig(epochs=1, ema_decay=0.9, batchnorm=True, **QUICK)
    session = _trained(config, digits)
    assert session.eval_model is session.ema.module
    raw, averaged = session.model.state_dict(), session.eval_model.state_dict()
    assert raw.keys() == averaged.keys()
    assert any(not torch.equal(raw[key], averaged[key]) for key in raw if key.endswith("weight"))
    assert not torch.equal(raw["1.running_mean"], averaged["1.running_mean"])  # buffers averaged too

    validated = session.history[0]
    ema_val = session.evaluate_metrics(digits.val)
    assert (validated["val_loss"], validated["val_accuracy"]) == (ema_val["loss"], ema_val["accuracy"])
    ema_test = session.evaluate_metrics(digits.test)

    # What a checkpoint's model file holds (eval_model's state dict) loads into a plain model.
    model_bytes = io.BytesIO()
    torch.save(averaged, model_bytes)
    tested = evaluate_on_test(config, model_bytes.getvalue(), data=digits)
    assert tested.metrics["test_loss"] == pytest.approx(ema_test["loss"], rel=1e-6)
    assert session.state_dict()["ema"]["n_averaged"] == math.ceil(len(digits.train) / config.batch_size)
    session.ema = None  # the raw weights give other figures
    assert session.evaluate_metrics(digits.val)["loss"] != validated["val_loss"]


def test_ema_follows_its_decay_per_step(digits) -> None:
    config = TrainConfig(epochs=1, ema_decay=0.5, model="mlp", hidden_sizes=[16], **{**QUICK, "batch_size": 575})
    session = _trained(config, digits)  # two steps of 575 images
    snapshots = []
    straight = TrainingSession(config, data=digits)
    order = torch.randperm(len(digits.train), generator=straight.batch_order)
    for batch in order.split(575):
        inputs, targets, _ = straight._training_batch(digits.train.images[batch], digits.train.labels[batch])
        loss = F.cross_entropy(straight.model(inputs), targets)
        straight.optimizer.zero_grad()
        loss.backward()
        straight.optimizer.step()
        snapshots.append(straight.model[1].weight.detach().clone())
    expected = 0.5 * snapshots[0] + 0.5 * snapshots[1]  # the first step copies, the second averages
    assert torch.allclose(session.eval_model[1].weight, expected, atol=1e-6)


# ----------------------------------------------------------------------------------------------- image sizes

def test_the_model_trains_and_evaluates_at_the_sizes_set(digits) -> None:
    config = TrainConfig(epochs=1, train_image_size=16, eval_image_size=12, **QUICK)
    session = TrainingSession(config, data=digits)
    seen: list[tuple[bool, tuple[int, ...]]] = []
    session.model[0].register_forward_pre_hook(
        lambda module, args: seen.append((module.training, tuple(args[0].shape[-2:]))))
    session.run_epoch()
    assert {shape for training, shape in seen if training} == {(16, 16)}
    assert {shape for training, shape in seen if not training} == {(12, 12)}
    assert (session.train_input_shape, session.eval_input_shape) == ((1, 16, 16), (1, 12, 12))
    native_macs = static_costs(session.model, (1, 8, 8))["macs"]
    assert static_costs(session.model, session.eval_input_shape)["macs"] > native_macs  # costs at the eval size


def test_zero_keeps_the_dataset_size(digits) -> None:
    session = TrainingSession(TrainConfig(train_image_size=0, eval_image_size=None, **QUICK), data=digits)
    assert session.train_input_shape == session.eval_input_shape == (1, 8, 8)


def test_a_flattening_model_built_at_one_size_refuses_another(digits) -> None:
    mlp = TrainingSession(TrainConfig(model="mlp", train_image_size=12, eval_image_size=12, **QUICK), data=digits)
    assert mlp.model[1].in_features == 144  # built for the size it trains at
    with pytest.raises(ValueError, match=r"eval_image_size: model 'mlp' built for 8x8 images cannot take 16x16"):
        TrainingSession(TrainConfig(model="mlp", eval_image_size=16, **QUICK), data=digits)
    with pytest.raises(ValueError, match=r"eval_image_size: .*'cnn'.*set train_image_size and eval_image_size alike"):
        TrainingSession(TrainConfig(global_pool=False, train_image_size=12, **QUICK), data=digits)


# ----------------------------------------------------------------------------------------------- pruning

def _zeros(model: nn.Module) -> int:
    return sum(int((layer.weight == 0).sum()) for layer in prunable_layers(model))


def test_one_shot_pruning_after_the_last_epoch_reaches_the_amount_and_is_permanent(digits) -> None:
    config = TrainConfig(epochs=2, prune_amount=0.6, **QUICK)
    session = TrainingSession(config, data=digits)
    costs = static_costs(session.model, session.eval_input_shape, prune_amount=0.6)
    order = [name for name, _ in session.model.named_parameters()]
    parameters = list(session.model.parameters())
    first = session.run_epoch()
    assert first["sparsity"] < 0.01 and not session.fully_pruned
    last = session.run_epoch()
    total = prunable_count(session.model)
    assert _zeros(session.model) == round(0.6 * total) and last["sparsity"] == pytest.approx(0.6, abs=1 / total)
    assert session.fully_pruned
    assert [name for name, _ in session.model.named_parameters()] == order  # same order, same objects
    assert all(a is b for a, b in zip(session.model.parameters(), parameters))
    state = session.model.state_dict()
    assert not any(key.endswith(("_orig", "_mask")) for key in state)
    assert not any(module._forward_pre_hooks for module in session.model.modules())
    # The last validation saw the pruned model; params counted before training are the nonzero ones.
    assert session.evaluate_metrics(digits.val)["loss"] == last["val_loss"]
    nonzero = sum(int((p != 0).sum()) for p in session.model.parameters() if p.requires_grad)
    assert costs["params"] == nonzero < sum(p.numel() for p in session.model.parameters())


def test_gradual_pruning_rises_on_its_cubic_schedule_and_keeps_pruned_weights_at_zero(digits) -> None:
    config = TrainConfig(epochs=6, prune_amount=0.8, prune_schedule="gradual", ema_decay=0.9, **QUICK)
    session = TrainingSession(config, data=digits)
    total = prunable_count(session.model)
    history = [session.run_epoch() for _ in range(4)]
    assert all(metrics["sparsity"] < 0.01 for metrics in history)  # the last third: epochs 5 and 6
    session.run_epoch()
    assert _zeros(session.model) == round(0.8 * (1 - 0.5 ** 3) * total)  # trained at that sparsity
    masks = [mask.clone() for mask in session.pruner.masks]
    session.run_epoch()
    assert _zeros(session.model) == round(0.8 * total) and session.fully_pruned
    assert all((~old <= ~new).all() for old, new in zip(masks, session.pruner.masks))  # pruned stays pruned
    assert _zeros(session.eval_model) >= round(0.8 * total)  # the EMA copy carries the masks
    assert session.history[-1]["sparsity"] == sparsity(session.eval_model)


def test_pruning_works_on_channels_last_weights(digits) -> None:
    session = TrainingSession(TrainConfig(epochs=1, prune_amount=0.5, **QUICK), data=digits,
                              precision=Precision(autocast_dtype=None, channels_last=True))
    session.run_epoch()
    conv = prunable_layers(session.model)[0]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert _zeros(session.model) == round(0.5 * prunable_count(session.model))


def test_pruner_state_survives_save_and_load() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(144, 10))
    pruner = Pruner(model, amount=0.5, schedule="one_shot", epochs=1)
    pruner.end_epoch(1)
    restored_model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(144, 10))
    restored_model.load_state_dict(_through_bytes(model.state_dict()))  # plain keys: loads into a dense model
    restored = Pruner(restored_model, amount=0.5, schedule="one_shot", epochs=1)
    restored.load_state_dict(_through_bytes(pruner.state_dict()))
    assert restored.done and restored.pruned == pruner.pruned == round(0.5 * prunable_count(model))
    with torch.no_grad():
        restored_model[2].weight.add_(1.0)
    restored.enforce()
    assert _zeros(restored_model) == pruner.pruned


# ----------------------------------------------------------------------------------------------- resuming

@pytest.mark.parametrize("overrides, epochs, interrupt_after", [
    ({"prune_amount": 0.7, "prune_schedule": "gradual", "ema_decay": 0.8, "batchnorm": True}, 4, 3),
    ({"prune_amount": 0.5, "ema_decay": 0.9}, 3, 2),
    ({"augment": "trivialaugment", "random_erasing": 0.3, "mixup_alpha": 0.2, "cutmix_alpha": 1.0,
      "repeated_augment": 2, "label_smoothing": 0.1, "dropout": 0.2}, 3, 2),
], ids=["gradual-pruning-ema", "one-shot-pruning-ema", "augmentations-and-mixing"])
def test_resuming_equals_training_straight_through(overrides: dict, epochs: int, interrupt_after: int,
                                                   digits) -> None:
    config = TrainConfig(epochs=epochs, seed=3, train_image_size=10, **{**QUICK, **overrides})
    straight = _trained(config, digits)

    interrupted = _trained(config, digits, epochs=interrupt_after)
    state = _through_bytes(interrupted.state_dict())
    resumed = TrainingSession(config, data=digits)
    resumed.load_state_dict(state)
    if resumed.pruner is not None:  # the masks come back with the state: pruned weights stay pruned
        assert resumed.pruner.pruned == interrupted.pruner.pruned and resumed.fully_pruned == interrupted.fully_pruned
    while not resumed.finished:
        resumed.run_epoch()

    keys = (*DETERMINISTIC_METRICS, *(("sparsity",) if "prune_amount" in overrides else ()))
    assert [[m[key] for key in keys] for m in resumed.history] == [[m[key] for key in keys] for m in straight.history]
    for name, tensor in straight.eval_model.state_dict().items():
        assert torch.equal(resumed.eval_model.state_dict()[name], tensor), name


# ----------------------------------------------------------------------------------------------- defaults, errors

def test_every_knob_is_off_by_default(digits) -> None:
    session = TrainingSession(TrainConfig(epochs=1, **QUICK), data=digits)
    assert (session.mixer, session.ema, session.pruner) == (None, None, None)
    assert session.eval_model is session.model and session.fully_pruned
    assert "sparsity" not in session.run_epoch()


@pytest.mark.parametrize("field, value, allowed", [
    ("augment", "trivial", r"known: .*'trivialaugment'.*did you mean 'trivialaugment'"),
    ("random_erasing", 1.5, "less than or equal to 1"),
    ("mixup_alpha", -0.1, "greater than or equal to 0"),
    ("cutmix_alpha", -1, "greater than or equal to 0"),
    ("repeated_augment", 0, "greater than or equal to 1"),
    ("ema_decay", 1.0, "less than 1"),
    ("train_image_size", 2, r"0 \(or null\) keeps the dataset's size, else 4 to 4096 pixels"),
    ("eval_image_size", 5000, "4 to 4096 pixels"),
    ("prune_amount", 1.0, "less than 1"),
    ("prune_schedule", "cubic", r"not one of \['one_shot', 'gradual'\]"),
])
def test_bad_values_are_refused_naming_the_field(field: str, value, allowed: str) -> None:
    with pytest.raises(ValidationError, match=rf"{field}\n.*{allowed}"):
        TrainConfig(**{field: value})
    space = {"name": "recipe", "space": {field: {"choice": [value]}}}
    with pytest.raises(SpecError, match=rf"space\.{field}\.choice: .* is not allowed for {field}: .*{allowed}"):
        validate_spec(space, check_data=False)


def test_a_spec_searching_every_knob_validates() -> None:
    spec = validate_spec({"name": "recipe", "train": {"epochs": 6}, "space": {
        "augment": {"choice": ["none", "trivialaugment"]}, "random_erasing": {"uniform": [0.0, 0.5]},
        "mixup_alpha": {"choice": [0.0, 0.2]}, "cutmix_alpha": {"choice": [0.0, 1.0]},
        "repeated_augment": {"int": [1, 3]}, "ema_decay": {"choice": [0.0, 0.99]},
        "train_image_size": {"choice": [0, 6]}, "eval_image_size": {"choice": [0, 10]},
        "prune_amount": {"uniform": [0.0, 0.9]}, "prune_schedule": {"choice": ["one_shot", "gradual"]}}},
        check_data=False)
    assert {param.name for param in spec.space.params} >= {"ema_decay", "prune_schedule", "train_image_size"}


# ----------------------------------------------------------------------------------------------- every dataset kind

EVERY_KNOB = {"augment": "trivialaugment", "random_erasing": 0.5, "mixup_alpha": 0.2, "cutmix_alpha": 1.0,
              "repeated_augment": 2, "ema_decay": 0.9, "label_smoothing": 0.1, "prune_amount": 0.5,
              "prune_schedule": "gradual", "train_image_size": 24, "eval_image_size": 32, "epochs": 3}


@pytest.mark.parametrize("in_memory", [True, False], ids=["in-memory", "streamed"])
def test_every_knob_at_once_trains_on_real_rgb_image_files(rgb_split_folders, in_memory: bool) -> None:
    """Decoded PNGs, held in memory or streamed from disk by a loader: every knob applies to their
    batches, the model evaluates at its eval size and is saved pruned with its EMA weights."""
    data = load_dataset("imagefolder", root=str(rgb_split_folders), in_memory=in_memory, workers=0)
    config = TrainConfig(model="cnn", **QUICK, **EVERY_KNOB)
    session = _trained(config, data)
    history = session.history
    assert len(history) == 3 and all(math.isfinite(epoch["train_loss"]) for epoch in history)
    assert history[-1]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    saved = session.eval_model.state_dict()
    raw = session.model.state_dict()
    assert any(not torch.equal(saved[name], raw[name]) for name in raw if name.endswith("weight"))  # EMA, not raw
    weights = [tensor for name, tensor in saved.items() if name.endswith("weight") and tensor.dim() > 1]
    zeros = sum(int((tensor == 0).sum()) for tensor in weights) / sum(tensor.numel() for tensor in weights)
    assert zeros == pytest.approx(0.5, abs=0.01)
    assert session.eval_input_shape == (3, 32, 32) and session.train_input_shape == (3, 24, 24)
