"""What a protocol runs on: one init of one modality setting (:class:`InitRun`), and the cells it
iterates (:class:`CellScope`): each ``(init, protocol, task, fraction, seed, modality, fusion)`` is one
:class:`~eossl.evaluation.sink.Cell`. A cell already in ``results.csv`` of a resumed evaluation is
skipped, and the results are written after every cell that completes (:meth:`Evaluation.completed`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from eossl.data.modality import Modality
from eossl.data.normalize import BandNormalizer
from eossl.evaluation.budget import Rates
from eossl.evaluation.data import EvalData
from eossl.evaluation.features import cache_key, cached
from eossl.evaluation.sink import Cell, ResultSink, RunKey, Setting, map_picks
from eossl.evaluation.subsets import LabelSubsets
from eossl.evaluation.tasks._base import Task
from eossl.models.interface import Encoder

if TYPE_CHECKING:
    from eossl.evaluation.config import EvaluateBase

Featurize = Callable[[Iterable[torch.Tensor]], torch.Tensor]


@dataclass
class Evaluation:
    """Everything shared by the runs of one evaluation: ``done``, the cells in ``results.csv`` (loaded when
    resuming, grown as cells complete); ``recorded_rates``, the learning rates that resumed cells chose;
    ``filled``, the non-finite input values filled per input (:meth:`count_filled`)."""

    cfg: EvaluateBase
    data: EvalData
    subsets: LabelSubsets
    sink: ResultSink
    device: torch.device
    log: Callable[[str], None] = print
    done: set[Cell] = field(default_factory=set)
    recorded_rates: dict[Cell, Rates] = field(default_factory=dict)
    filled: dict[str, int] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    _targets: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)

    def target(self, split: str, task: Task) -> torch.Tensor:
        """A task's target over a whole split (read once)."""
        key = (split, task.target.name)
        if key not in self._targets:
            self._targets[key] = self.data.target(split, task)
        return self._targets[key]

    def completed(self, cells: Iterable[Cell]) -> None:
        """Mark ``cells`` done and write the results so far (an interrupted evaluation resumes after them)."""
        self.done.update(cells)
        self.sink.flush(self.summary())

    def count_filled(self, normalizer: BandNormalizer | None) -> None:
        """Add the non-finite input values ``normalizer`` filled to the evaluation's counts (and reset its own)."""
        if normalizer is None:
            return
        for name, count in normalizer.filled.items():
            self.filled[name] = self.filled.get(name, 0) + int(count)
            normalizer.filled[name] = 0

    def summary(self) -> dict[str, Any]:
        """``summary.json``: the ``manifest`` (sources, cells planned), the cells done and the non-finite
        input values filled so far, per input."""
        return {**self.manifest, "cells_done": len(self.done), "filled_nonfinite_values": dict(self.filled)}


@dataclass
class CellScope:
    """The cells of one init (reported as ``init``) on one ``setting``, before anything is built: which
    (task, fraction, seed) each protocol runs, which are done, and their label subsets."""

    evaluation: Evaluation
    setting: Setting
    init: str

    @property
    def cfg(self) -> EvaluateBase:
        return self.evaluation.cfg

    @property
    def data(self) -> EvalData:
        return self.evaluation.data

    @property
    def modality(self) -> Modality:
        return self.data.modality(self.setting.combo)

    def cell(self, protocol: str, task: Task, fraction: float, seed: int) -> Cell:
        """The cell of ``protocol`` on ``task`` at ``fraction`` and ``seed`` for this init and setting."""
        return Cell(self.init, protocol, task.name, fraction, seed, self.setting.name, self.setting.fusion)

    def selected(self, kinds: Callable[[Task], bool] | None = None, tasks: list[str] | None = None,
                 fractions: list[float] | None = None) -> Iterator[tuple[Task, float, int]]:  # fmt: skip
        """``(task, fraction, seed)`` of every run, tasks in config order; change tasks only on the two
        dates of their pair, other tasks never on a pair's dates."""
        for task in self.data.tasks:
            if (kinds is None or kinds(task)) and (tasks is None or task.name in tasks) and self.serves(task):
                for fraction in fractions or self.cfg.fractions:
                    for seed in self.cfg.seeds:
                        yield task, fraction, seed

    def cells(self, protocol: str, kinds: Callable[[Task], bool] | None = None, tasks: list[str] | None = None,
              fractions: list[float] | None = None) -> list[Cell]:  # fmt: skip
        """The cells :meth:`runs` goes through for ``protocol`` with the same selection, done or not."""
        return [self.cell(protocol, *run) for run in self.selected(kinds, tasks, fractions)]

    def runs(self, protocol: str, kinds: Callable[[Task], bool] | None = None, tasks: list[str] | None = None,
             fractions: list[float] | None = None) -> Iterator[tuple[Task, float, int, np.ndarray]]:  # fmt: skip
        """``(task, fraction, seed, subset positions)`` of every run of ``protocol`` that is not done yet
        (see :meth:`selected`); when the protocol asks for the next run, the last one is complete and the
        results are written."""
        for task, fraction, seed in self.selected(kinds, tasks, fractions):
            cell = self.cell(protocol, task, fraction, seed)
            if cell in self.evaluation.done:
                continue
            yield task, fraction, seed, self.evaluation.subsets(task, fraction, seed)
            self.complete([cell])

    def joint_cells(self, protocol: str, tasks: list[Task], fractions: list[float]) -> list[Cell]:
        """The cells of a protocol that learns ``tasks`` together, per fraction and seed."""
        return [self.cell(protocol, t, f, s) for f in fractions for s in self.cfg.seeds for t in tasks]

    def joint_runs(self, protocol: str, tasks: list[Task], fractions: list[float]) -> Iterator[tuple[float, int]]:
        """``(fraction, seed)`` of every run of a protocol that learns ``tasks`` together and whose cells
        are not all done; the run's cells (one per task) complete when the next one is asked for."""
        for fraction in fractions:
            for seed in self.cfg.seeds:
                cells = [self.cell(protocol, task, fraction, seed) for task in tasks]
                if all(cell in self.evaluation.done for cell in cells):
                    continue
                yield fraction, seed
                self.complete(cells)

    def complete(self, cells: list[Cell]) -> None:
        """``cells`` are measured: mark them done and write the results (:meth:`Evaluation.completed`)."""
        self.evaluation.completed(cells)

    def serves(self, task: Task) -> bool:
        """Whether this setting's input is what ``task`` takes (a pair's two dates for change tasks)."""
        pair = self.data.pair_of(self.setting.combo) if self.setting.pair else None
        if task.kind.pairs:
            return pair is not None and pair.target == task.target.name
        return pair is None

    def key(self, protocol: str, task: Task, fraction: float, seed: int) -> RunKey:
        return RunKey(self.init, protocol, task, fraction, seed)


@dataclass
class InitRun(CellScope):
    """One init (reported as ``init``) of one ``setting``: its encoder and normaliser (None for inits that
    give features directly), how it turns input batches into features, and where its results go."""

    encoder: Encoder | None
    normalizer: BandNormalizer | None
    encoder_name: str
    featurize: Featurize
    cache_tag: str
    _features: dict[str, torch.Tensor] | None = None

    def complete(self, cells: list[Cell]) -> None:
        """As :meth:`CellScope.complete`, counting the values this init's normaliser filled so far first."""
        self.evaluation.count_filled(self.normalizer)
        super().complete(cells)

    # -- frozen features ---------------------------------------------------------------------------
    def features(self) -> dict[str, torch.Tensor]:
        """Features of every split, computed batch by batch once per run and cached under ``out/features``."""
        if self._features is None:
            folder, store, prefix = (
                self.evaluation.sink.out / "features",
                self.data.store.path,
                self.cache_tag.split(":")[0],
            )
            self._features = {}
            for split, idx in self.data.splits.items():
                path = folder / f"{prefix}-{split}-{cache_key(store, self.cache_tag, idx.tobytes())}.pt"
                compute = lambda split=split: self.featurize(self.data.inputs(split, self.setting.combo, 512))  # noqa: E731
                self._features[split] = cached(path, compute)
        return self._features

    # -- trained models ----------------------------------------------------------------------------
    def missing_at_test(self) -> list[str]:
        """Modalities of the current fused combination to blank in extra test evaluations."""
        combo = self.setting.combo
        return [m for m in self.cfg.fusion.missing_at_test if len(combo) > 1 and m in combo]

    def test_inputs(self, absent: str | None = None) -> Iterator[torch.Tensor]:
        return self.data.inputs("test", self.setting.combo, 256, absent)

    def record(self, key: RunKey, outputs: torch.Tensor, degraded: dict[str, torch.Tensor], curve: list[dict],
               extra: dict[str, Any], last_fraction: float) -> None:  # fmt: skip
        """One trained model's results: test rows, rows with a modality missing (``degraded``: modality ->
        outputs), its learning curve and, for dense tasks, prediction maps."""
        sink, target = self.evaluation.sink, self.evaluation.target("test", key.task)
        sink.add(key, key.task.metrics(outputs, target), **extra)
        for absent, out in degraded.items():
            sink.add(key, key.task.metrics(out, target), missing=absent, **extra)
        sink.curve(key, curve)
        if sink.wants_maps(key, last_fraction):
            self.save_maps(key, outputs, target)

    def save_maps(self, key: RunKey, outputs: torch.Tensor, target: torch.Tensor) -> None:
        store, test = self.data.store, self.data.splits["test"]
        group = store.dates.group if store.dates is not None else None
        picks = map_picks(store.table, test, self.cfg.prediction_maps, group)
        images = self.data.dataset("test", self.setting.combo, positions=picks).__getitems__(list(range(len(picks))))
        inputs = {"images": images["input"], "truth": target[picks], "bands": list(self.modality.bands),
                  "class_names": list(key.task.target.class_names or store.class_names),
                  "dates": len(self.setting.combo) if key.task.kind.pairs else 1}  # fmt: skip
        self.evaluation.sink.save_maps(key, inputs, outputs[torch.from_numpy(picks)])
