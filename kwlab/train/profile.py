"""`kwlab train CONFIG --profile`: where one trial's wall time goes, and how close its compute runs to its FLOP time.

`TrialProfile` wraps, for the duration of its `with` block, the recipe's parts (with `unittest.mock.patch`, so
the recipe itself carries no timing code) and charges each moment of wall time to one category:

- start-up: loading the data and building the model, optimizer and schedules (`kwlab train` runs no Ray);
- data and augmentation: producing batches (slicing or the DataLoader, moving them to the device), augmentation
  and mixup;
- training compute: the rest of the training passes (forward, backward, optimizer, temperature and LR steps);
- evaluation: validation every epoch and the final test passes, less their batches' data time;
- checkpoints and files: checkpoints (saving, loading, the best weights) and the trial directory's files;
- attention records: the method's statistics pass over the validation set and attention.npz;
- other: what is left (pricing, the summary, Python between the parts).

Nested parts go to the innermost one, except that everything inside the attention records counts as attention
records. The FLOP time is the time the trial's multiply-adds at its method's floor (`Price.floor_macs`: 3 per MAC
for a training image, forward and backward; 1 for an evaluated image) would take at the rate this machine runs the
static model's forward+backward at the trial's batch size, measured after the trial (the fastest of a few steps).
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from unittest import mock

import torch

from kwlab import data as kwdata
from kwlab import store
from kwlab.methods import METHODS
from kwlab.methods.mixing.measured import timed
from kwlab.train import checkpoint, recipe
from kwlab.train.config import TrainConfig

STARTUP, DATA, TRAINING, EVALUATION, FILES, ATTENTION, OTHER = (
    "start-up", "data and augmentation", "training compute", "evaluation", "checkpoints and files",
    "attention records", "other")
CATEGORIES = (STARTUP, DATA, TRAINING, EVALUATION, FILES, ATTENTION, OTHER)
CHECKPOINT_FUNCTIONS = ("save", "save_best", "load", "load_best", "restore")
TRIAL_FILES = ("write_config", "write_metrics", "write_summary")


@dataclass(frozen=True)
class FlopTime:
    """The trial's multiply-adds at its floor and the time they would take at the static model's measured rate."""

    macs: float  # at the floor, training images x 3 + evaluated images
    rate: float  # the static model's MACs per second, forward+backward, on this machine
    seconds: float


class TrialProfile:
    """Wall time per category of a trial run inside the `with` block (see the module doc)."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.seconds: dict[str, float] = defaultdict(float)
        self.images: dict[str, int] = defaultdict(int)  # images through the model per category (training, eval)
        self.splits: kwdata.Splits | None = None
        self._stack: list[str] = []
        self._mark = 0.0
        self._exits = contextlib.ExitStack()

    def _charge(self) -> None:
        """Charge the time since the last charge to the current category."""
        now = time.perf_counter()
        self.seconds[self._stack[-1] if self._stack else OTHER] += now - self._mark
        self._mark = now

    @contextlib.contextmanager
    def section(self, category: str) -> Iterator[None]:
        """Charge the block's time to `category` (inside the attention records, to them)."""
        self._charge()
        self._stack.append(ATTENTION if ATTENTION in self._stack else category)
        try:
            yield
        finally:
            self._charge()
            self._stack.pop()

    def _timed(self, category: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.section(category):
                return function(*args, **kwargs)

        return timed

    def _batches(self, function: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        """Time each batch the recipe's `batches` produces as data, and count its images for the enclosing pass."""

        def timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
            parts = function(*args, **kwargs)
            while True:
                with self.section(DATA):
                    item = next(parts, None)
                if item is None:
                    return
                self.images[self._stack[-1] if self._stack else OTHER] += len(item[1])
                yield item

        return timed

    def _build(self, function: Callable[..., recipe.Training]) -> Callable[..., recipe.Training]:
        """Time building the training as start-up, and its augmentation and mixup calls as data."""

        def build(*args: Any, **kwargs: Any) -> recipe.Training:
            with self.section(STARTUP):
                training = function(*args, **kwargs)
            for name in ("augment", "mixup"):
                if getattr(training, name) is not None:
                    setattr(training, name, self._timed(DATA, getattr(training, name)))
            return training

        return build

    def _load(self, function: Callable[..., kwdata.Splits]) -> Callable[..., kwdata.Splits]:
        def load(*args: Any, **kwargs: Any) -> kwdata.Splits:
            with self.section(STARTUP):
                self.splits = function(*args, **kwargs)
            return self.splits

        return load

    def _patches(self) -> list[Any]:
        """The recipe's parts, wrapped (see the module doc)."""
        patches = [
            mock.patch.object(kwdata, "load", self._load(kwdata.load)),
            mock.patch.object(recipe, "build_training", self._build(recipe.build_training)),
            mock.patch.object(recipe, "batches", self._batches(recipe.batches)),
            mock.patch.object(recipe.Training, "train_epoch", self._timed(TRAINING, recipe.Training.train_epoch)),
            mock.patch.object(recipe.Training, "evaluate", self._timed(EVALUATION, recipe.Training.evaluate)),
            mock.patch.object(store.TrialDir, "write_attention",
                              self._timed(ATTENTION, store.TrialDir.write_attention)),
            *(mock.patch.object(checkpoint, name, self._timed(FILES, getattr(checkpoint, name)))
              for name in CHECKPOINT_FUNCTIONS),
            *(mock.patch.object(store.TrialDir, name, self._timed(FILES, getattr(store.TrialDir, name)))
              for name in TRIAL_FILES),
        ]
        method = METHODS.get(self.cfg.method)
        make_recorder = method.recorder

        def recorder(model: torch.nn.Module) -> Any:
            made = make_recorder(model)
            return None if made is None else _Charged(made, self)

        return [*patches, mock.patch.object(method, "recorder", recorder)]

    def __enter__(self) -> TrialProfile:
        for patch in self._patches():
            self._exits.enter_context(patch)
        self._mark = time.perf_counter()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._charge()
        self._exits.close()

    # ------------------------------------------------------------------------------------------------- results

    @property
    def total(self) -> float:
        """The wall time inside the `with` block."""
        return sum(self.seconds.values())

    def shares(self) -> dict[str, float]:
        """Percent of the wall time per category, in CATEGORIES order (they sum to 100)."""
        total = self.total or 1.0
        return {category: 100 * self.seconds.get(category, 0.0) / total for category in CATEGORIES}

    def flop_time(self, steps: int = 5) -> FlopTime:
        """The trial's MACs at its floor and their time at the static model's rate, measured now on the fastest of
        `steps` forward+backward passes (after one untimed) of a batch shaped like the trial's."""
        cfg = self.cfg
        splits = self.splits if self.splits is not None else kwdata.load(cfg.data, seed=cfg.seed)
        price = recipe.price(cfg, splits.num_classes, splits.in_chans, splits.image_size)
        runtime = recipe.Runtime.resolve(cfg.runtime)
        model = recipe.build_model(cfg.model.name, "static", None, **recipe.model_kwargs(cfg, splits))
        model.to(device=runtime.device, memory_format=runtime.memory_format).train()
        shape = (cfg.batch_size, splits.in_chans, splits.image_size, splits.image_size)
        x = torch.randn(shape, device=runtime.device).to(memory_format=runtime.memory_format)
        def step() -> None:
            with runtime.autocast():
                out = model(x)
            out.float().sum().backward()

        step()  # untimed: first-call allocations
        fastest = min(timed(runtime.device, step) for _ in range(steps))  # a shared machine slows some steps
        rate = 3 * price.macs_parts["conv"] * cfg.batch_size / fastest  # the static model's MACs
        evaluated = sum(count for category, count in self.images.items() if category != TRAINING)
        macs = float(price.floor_macs) * (3 * self.images.get(TRAINING, 0) + evaluated)
        return FlopTime(macs, rate, macs / rate)


class _Charged:
    """A method's recorder whose `with` block is charged to the attention records."""

    def __init__(self, recorder: Any, profile: TrialProfile) -> None:
        self.recorder, self.profile = recorder, profile
        self.section = profile.section(ATTENTION)

    def __enter__(self) -> Any:
        self.section.__enter__()
        self.recorder.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        try:
            self.recorder.__exit__(kind, error, tb)
        finally:
            self.section.__exit__(kind, error, tb)

    def arrays(self) -> Any:
        """The recorder's statistics."""
        return self.recorder.arrays()


def print_profile(profile: TrialProfile, flops: FlopTime, console: Any) -> None:
    """The profile as a table of seconds and shares, then the FLOP time and the trial's share of it."""
    from rich.table import Table

    table = Table(title="where the trial's time went", title_justify="left")
    for column in ("part", "seconds", "share"):
        table.add_column(column, justify="left" if column == "part" else "right")
    for category, share in profile.shares().items():
        table.add_row(category, f"{profile.seconds.get(category, 0.0):.2f}", f"{share:.1f}%")
    table.add_row("total", f"{profile.total:.2f}", "100.0%")
    console.print(table)
    console.print(f"FLOP time: {flops.seconds:.2f} s ({flops.macs / 1e9:.3g} GMAC at the method's floor, at the "
                  f"static model's {flops.rate / 1e9:.3g} GMAC/s here); the trial achieved "
                  f"{100 * flops.seconds / profile.total:.1f}% of it (FLOP time over wall time)")
