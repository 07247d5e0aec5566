"""A trial's epochs one ahead of Tune: never more than one, its checkpoint as of the epoch Tune took,
its errors raised where Tune looks for them, a stopped trial's epoch interrupted within a batch."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch
from ray import tune

from hpsearch.platform.ahead import Epoch, EpochsAhead
from hpsearch.platform.search import _shared
from hpsearch.platform.trial import STATE_FILE, SearchTrial
from hpsearch.search_spaces.spec import validate_spec
from hpsearch.trainables import Interrupted


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class Counting:
    """Epochs numbered from 1; `done` at `last`; interruptible like a training session."""

    def __init__(self, last: int = 100, fail_at: int | None = None) -> None:
        self.produced, self.last, self.fail_at = 0, last, fail_at
        self.interrupted = threading.Event()

    def __call__(self) -> Epoch:
        if self.interrupted.is_set():
            raise Interrupted
        self.produced += 1
        if self.produced == self.fail_at:
            raise ValueError(f"epoch {self.produced} failed")
        return Epoch({"epoch": self.produced, "done": self.produced == self.last})


def test_never_more_than_one_epoch_ahead_of_what_was_taken():
    produce = Counting()
    ahead = EpochsAhead(produce, interrupt=produce.interrupted.set, threads=1)
    try:
        wait_until(lambda: produce.produced == 1)
        time.sleep(0.2)
        assert produce.produced == 1  # produced, not taken: nothing more
        assert ahead.next().result["epoch"] == 1
        wait_until(lambda: produce.produced == 2)  # the next one starts as soon as it was taken
        time.sleep(0.2)
        assert produce.produced == 2
        assert [ahead.next().result["epoch"] for _ in range(3)] == [2, 3, 4]
    finally:
        ahead.stop()
    assert produce.produced <= 5


def test_a_done_epoch_ends_the_thread_and_an_error_comes_after_the_epochs_before_it():
    produce = Counting(last=2)
    ahead = EpochsAhead(produce, interrupt=produce.interrupted.set, threads=1)
    assert [ahead.next().result["epoch"] for _ in range(2)] == [1, 2]
    ahead._thread.join(timeout=10)
    assert not ahead._thread.is_alive() and produce.produced == 2

    failing = Counting(fail_at=3)
    ahead = EpochsAhead(failing, interrupt=failing.interrupted.set, threads=1)
    assert [ahead.next().result["epoch"] for _ in range(2)] == [1, 2]
    with pytest.raises(ValueError, match="epoch 3 failed"):
        ahead.next()
    ahead.stop()


def test_the_epochs_thread_keeps_the_trials_torch_threads():
    seen = []

    def produce() -> Epoch:
        seen.append(torch.get_num_threads())
        return Epoch({"done": True})

    before = torch.get_num_threads()
    ahead = EpochsAhead(produce, interrupt=lambda: None, threads=1)
    ahead.next()
    ahead.stop()
    assert seen == [1] and torch.get_num_threads() == before


@pytest.fixture
def trial(ray_session):
    """A search's trial as Tune builds it, in this process: 40 epochs of an MLP on digits."""
    spec = validate_spec({"name": "ahead", "train": {"epochs": 40, "model": "mlp", "hidden_sizes": [32]},
                          "space": {"lr": {"grid": [0.01]}}})
    made = tune.with_parameters(SearchTrial, shared=_shared(spec))({"lr": 0.01})
    yield made
    made.stop()


def test_a_checkpoint_holds_the_epoch_tune_took_while_the_next_one_trains(trial, tmp_path: Path):
    first = trial.train()
    assert first["epoch"] == 1 and first["should_checkpoint"]
    wait_until(lambda: trial._session.epoch == 2)  # the next epoch ran on meanwhile
    trial.save_checkpoint(str(tmp_path))
    state = torch.load(tmp_path / STATE_FILE, weights_only=False)
    assert state["epoch"] == 1 and state["best_epoch"] == 1
    assert trial.train()["epoch"] == 2


def test_a_stopped_trial_ends_its_epochs_thread_and_leaves_no_checkpoint_behind(trial):
    trial.train()
    session, ahead = trial._session, trial._ahead
    wait_until(lambda: ahead._epoch is not None)  # the second epoch, produced, never to be taken
    kept, untaken = trial._checkpoint, ahead._epoch.checkpoint
    assert kept.is_dir() and untaken.is_dir()  # both epochs improved on the one before (digits, lr 0.01)
    trial.stop()
    assert not ahead._thread.is_alive()
    assert not kept.exists() and not untaken.exists()
    with pytest.raises(Interrupted):  # the session is done with: no epoch runs on it again
        session.run_epoch()


def test_an_interrupted_epoch_stops_at_its_next_batch():
    from hpsearch.trainables import TrainConfig, TrainingSession, load_dataset

    session = TrainingSession(TrainConfig(model="mlp", hidden_sizes=[16], batch_size=8, epochs=1),
                              data=load_dataset("digits"))
    forwards = []

    def count(module, inputs):
        forwards.append(len(inputs[0]))
        if len(forwards) == 3:
            session.interrupt()  # as stop() does from the actor's thread, here from the epoch's own

    session.model.register_forward_pre_hook(count)
    with pytest.raises(Interrupted):
        session.run_epoch()
    assert forwards == [8, 8, 8] and session.epoch == 0  # of about 180 batches, three ran
