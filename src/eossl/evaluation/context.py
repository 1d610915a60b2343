"""What a protocol runs on: one init of one modality setting (:class:`InitRun`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from eossl.data.modality import Modality
from eossl.data.normalize import BandNormalizer
from eossl.evaluation.data import EvalData
from eossl.evaluation.features import cache_key, cached
from eossl.evaluation.sink import ResultSink, RunKey, Setting, map_picks
from eossl.evaluation.subsets import LabelSubsets
from eossl.evaluation.tasks._base import Task
from eossl.models.interface import Encoder

if TYPE_CHECKING:
    from eossl.evaluation.config import EvaluateBase

Featurize = Callable[[Iterable[torch.Tensor]], torch.Tensor]


@dataclass
class Evaluation:
    """Everything shared by the runs of one evaluation."""

    cfg: EvaluateBase
    data: EvalData
    subsets: LabelSubsets
    sink: ResultSink
    device: torch.device
    log: Callable[[str], None] = print
    _targets: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)

    def target(self, split: str, task: Task) -> torch.Tensor:
        """A task's target over a whole split (read once)."""
        key = (split, task.target.name)
        if key not in self._targets:
            self._targets[key] = self.data.target(split, task)
        return self._targets[key]


@dataclass
class InitRun:
    """One init (reported as ``init``) of one ``setting``: its encoder and normaliser (None for inits that
    give features directly), how it turns input batches into features, and where its results go."""

    evaluation: Evaluation
    setting: Setting
    init: str
    encoder: Encoder | None
    normalizer: BandNormalizer | None
    encoder_name: str
    featurize: Featurize
    cache_tag: str
    _features: dict[str, torch.Tensor] | None = None

    @property
    def cfg(self) -> EvaluateBase:
        return self.evaluation.cfg

    @property
    def data(self) -> EvalData:
        return self.evaluation.data

    @property
    def modality(self) -> Modality:
        return self.data.modality(self.setting.combo)

    def runs(self, kinds: Callable[[Task], bool] | None = None, tasks: list[str] | None = None,
             fractions: list[float] | None = None) -> Iterator[tuple[Task, float, int, np.ndarray]]:  # fmt: skip
        """``(task, fraction, seed, subset positions)`` of every run, tasks in config order; change tasks
        only on the two dates of their pair, other tasks never on a pair's dates."""
        for task in self.data.tasks:
            if (kinds is None or kinds(task)) and (tasks is None or task.name in tasks) and self.serves(task):
                for fraction in fractions or self.cfg.fractions:
                    for seed in self.cfg.seeds:
                        yield task, fraction, seed, self.evaluation.subsets(task, fraction, seed)

    def serves(self, task: Task) -> bool:
        """Whether this setting's input is what ``task`` takes (a pair's two dates for change tasks)."""
        pair = self.data.pair_of(self.setting.combo) if self.setting.pair else None
        if task.kind.pairs:
            return pair is not None and pair.target == task.target.name
        return pair is None

    def key(self, protocol: str, task: Task, fraction: float, seed: int) -> RunKey:
        return RunKey(self.init, protocol, task, fraction, seed)

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
