"""A trial's epochs on a thread of their own, one epoch ahead of Tune.

Tune calls a class Trainable's `step` once per result, and only once the driver has taken the
previous one: run in `step`, a trial would sit idle for that round trip after every epoch (about
15 ms on a loaded 2-core machine, 3% of a 0.5 s epoch). Here the next epoch starts as soon as its
result is handed over, so the round trip overlaps it. The thread never runs more than one epoch
ahead of what the driver has taken. A trial Tune stops (ASHA, a time budget) has that epoch
interrupted at its next batch once its actor is stopped or handed its next trial (`reset_config`),
which with reused actors follows at once while trials wait to start. What Tune may save of an
epoch (`Epoch.checkpoint`) is written as the epoch ends, before the next one changes the weights.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from hpsearch.trainables import Interrupted


@dataclass(frozen=True)
class Epoch:
    """One result for Tune, and the folder its checkpoint was written to when it is to be saved."""

    result: dict[str, Any]
    checkpoint: Path | None = None


class EpochsAhead:
    """Calls `produce` on a thread, again and again, each time its last `Epoch` was taken by `next`,
    until one's result is `done`, it raises, or `stop` is called."""

    def __init__(self, produce: Callable[[], Epoch], *, interrupt: Callable[[], None], threads: int) -> None:
        self._produce, self._interrupt, self._threads = produce, interrupt, threads
        self._ready = threading.Condition()
        self._epoch: Epoch | None = None  # produced, not yet taken
        self._error: BaseException | None = None
        self._ended = self._stopped = False
        self._thread = threading.Thread(target=self._run, name="hpsearch-epochs", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        torch.set_num_threads(self._threads)  # torch's thread count is kept per thread
        try:
            while True:
                epoch = self._produce()
                with self._ready:
                    self._epoch = epoch
                    self._ready.notify_all()
                    self._ready.wait_for(lambda: self._epoch is None or self._stopped)
                    if self._stopped or epoch.result.get("done"):
                        return
        except Interrupted:
            pass
        except BaseException as error:  # raised in the trial's actor by `next`, as Tune expects a trial's error
            self._error = error
        finally:
            with self._ready:
                self._ended = True
                self._ready.notify_all()

    def next(self) -> Epoch:
        """The next epoch, once produced; its error if producing it raised."""
        with self._ready:
            self._ready.wait_for(lambda: self._epoch is not None or self._ended)
            epoch, self._epoch = self._epoch, None
            self._ready.notify_all()
        if epoch is not None:
            return epoch
        if self._error is not None:
            raise self._error
        raise RuntimeError("the trial's epochs ended without a result")

    def stop(self) -> Epoch | None:
        """Interrupt the epoch under way, if any, and wait for the thread to end; the epoch produced and
        never taken, if any."""
        with self._ready:
            self._stopped = True
            self._ready.notify_all()
        self._interrupt()
        self._thread.join()
        return self._epoch
