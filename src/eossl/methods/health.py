"""Collapse and health monitoring during pretraining, the same for every method.

Every ``every_n_steps`` the monitor encodes two augmented views of the current batch with the
encoder in eval mode and logs, on the pooled features:

- ``health/std``: mean per-dimension std of the L2-normalised features, times sqrt(dim): about 1 for
  features spread over the sphere, 0 when every sample maps to one point (complete collapse);
- ``health/rank``: effective rank (Roy & Vetterli, 2007) of the centred batch features: exp of the
  entropy of the normalised singular values, from 1 (all variation along one direction) to the dim;
- ``health/alignment`` and ``health/uniformity`` (Wang & Isola, 2020): mean squared distance between
  the two views of a sample (lower = more invariant) and log E exp(-2 ||z_i - z_j||^2) over pairs
  (lower = more uniform on the sphere);
- ``health/knn_accuracy``: weighted kNN accuracy of held-out labelled samples against a labelled bank
  from the training split, every ``knn_every_n_steps`` and at the end, when the store has labels.

Collapse (std or rank below its threshold) is warned about loudly at once and recorded; when it lasts
``stop_after_steps`` the run stops and :func:`eossl.methods.pretrain.run_pretrain` raises
:class:`eossl.errors.EmbeddingCollapseError`.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from eossl.models.features import encode
from eossl.models.knn import knn_accuracy


def normalized_std(features: torch.Tensor) -> float:
    z = F.normalize(features.float(), dim=1)
    return float(z.std(dim=0).mean() * math.sqrt(z.shape[1]))


def effective_rank(features: torch.Tensor, eps: float = 1e-12) -> float:
    centred = features.float() - features.float().mean(dim=0)
    singular = torch.linalg.svdvals(centred)
    p = singular / (singular.sum() + eps) + eps
    return float(torch.exp(-(p * p.log()).sum()))


def alignment(z1: torch.Tensor, z2: torch.Tensor) -> float:
    z1, z2 = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
    return float((z1 - z2).pow(2).sum(dim=1).mean())


def uniformity(z: torch.Tensor, t: float = 2.0) -> float:
    z = F.normalize(z.float(), dim=1)
    return float(torch.pdist(z).pow(2).mul(-t).exp().mean().log())


@dataclass
class KnnData:
    """Labelled images (physical units) for the online kNN: a bank from train, queries from val."""

    bank_images: torch.Tensor
    bank_labels: torch.Tensor
    query_images: torch.Tensor
    query_labels: torch.Tensor


@contextmanager
def _side_effect_free(module: Any) -> Iterator[None]:
    """Eval mode, and the input-filling counters restored: monitoring must not change the run's record."""
    was_training, filled = module.training, dict(module.normalizer.filled)
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)
        module.normalizer.filled.update(filled)


class HealthMonitor(L.Callback):
    def __init__(self, config: dict[str, Any], knn: KnnData | None = None, max_samples: int = 128) -> None:
        self.cfg, self.knn, self.max_samples = config, knn, max_samples
        self.collapsed_since: int | None = None
        self.warnings: list[str] = []
        self.stop_reason: str | None = None
        self.last: dict[str, float] = {}
        self.knn_history: list[tuple[int, float]] = []
        self.seconds = 0.0  # time spent monitoring, so throughput can be reported without it

    @torch.no_grad()
    def measure(self, module: Any, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """Health metrics of ``module.encoder`` on two views of (up to ``max_samples`` of) the batch."""
        small = {k: v[: self.max_samples] for k, v in batch.items() if isinstance(v, torch.Tensor)}
        with _side_effect_free(module):
            views = module.views(small, local=False)
            precision = module.trainer.precision_plugin.forward_context() if module._trainer else nullcontext()
            with precision:
                h1, h2 = module.encoder(torch.cat(views)).float().chunk(2)
        return {
            "std": normalized_std(h1),
            "rank": effective_rank(h1),
            "alignment": alignment(h1, h2),
            "uniformity": uniformity(h1),
        }

    def check(self, step: int, metrics: dict[str, float]) -> bool:
        """Record collapse at ``step``; return True when the run must stop."""
        collapsed = metrics["std"] < self.cfg["collapse_std"] or metrics["rank"] < self.cfg["collapse_rank"]
        if not collapsed:
            self.collapsed_since = None
            return False
        if self.collapsed_since is None:
            self.collapsed_since = step
            message = (
                f"step {step}: the embedding has COLLAPSED (std*sqrt(d) {metrics['std']:.4f} < "
                f"{self.cfg['collapse_std']} or effective rank {metrics['rank']:.2f} < {self.cfg['collapse_rank']}); "
                "check the learning rate, augmentations and method settings"
            )
            self.warnings.append(message)
            print(f"\nWARNING: {message}", file=sys.stderr, flush=True)
        limit = self.cfg["stop_after_steps"]
        if limit and step - self.collapsed_since >= limit:
            self.stop_reason = (
                f"the embedding stayed collapsed from step {self.collapsed_since} to step {step} "
                f"(health.stop_after_steps={limit}); last std*sqrt(d) {metrics['std']:.4f}, "
                f"effective rank {metrics['rank']:.2f}"
            )
            return True
        return False

    def run_knn(self, module: Any) -> float:
        data, device = self.knn, module.device
        with _side_effect_free(module):
            bank = encode(module.encoder, module.normalizer, module.modality_name, data.bank_images, device)
            query = encode(module.encoder, module.normalizer, module.modality_name, data.query_images, device)
        return knn_accuracy(bank, data.bank_labels, query, data.query_labels, self.cfg["knn_k"])

    def on_train_batch_end(self, trainer: L.Trainer, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        started = time.perf_counter()
        self._on_step(trainer, module, batch)
        self.seconds += time.perf_counter() - started

    def _on_step(self, trainer: L.Trainer, module: Any, batch: Any) -> None:
        step = trainer.global_step
        if step % self.cfg["every_n_steps"] == 0 or step == 1:
            self.last = self.measure(module, batch)
            module.log_dict({f"health/{k}": v for k, v in self.last.items()})
            if self.check(step, self.last):
                trainer.should_stop = True
        every_knn = self.cfg["knn_every_n_steps"]
        if self.knn is not None and every_knn and step % every_knn == 0:
            self.knn_history.append((step, self.run_knn(module)))
            module.log("health/knn_accuracy", self.knn_history[-1][1], prog_bar=True)

    def on_train_end(self, trainer: L.Trainer, module: Any) -> None:
        started = time.perf_counter()
        if self.knn is not None and (not self.knn_history or self.knn_history[-1][0] != trainer.global_step):
            self.knn_history.append((trainer.global_step, self.run_knn(module)))
        self.seconds += time.perf_counter() - started

    def state_dict(self) -> dict[str, Any]:
        """What the monitor has recorded (plain data, kept in checkpoints so a resumed run reports all of it)."""
        return {"collapsed_since": self.collapsed_since, "warnings": list(self.warnings), "last": dict(self.last),
                "knn_history": [list(p) for p in self.knn_history], "seconds": self.seconds}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.collapsed_since = state.get("collapsed_since")
        self.warnings = list(state.get("warnings", []))
        self.last = dict(state.get("last", {}))
        self.knn_history = [(int(s), float(a)) for s, a in state.get("knn_history", [])]
        self.seconds = float(state.get("seconds", 0.0))

    def summary(self) -> dict[str, Any]:
        return {
            "last": {k: round(v, 4) for k, v in self.last.items()},
            "knn_accuracy": [{"step": s, "accuracy": round(a, 4)} for s, a in self.knn_history],
            "collapse_warnings": self.warnings,
            "stopped": self.stop_reason,
            "seconds": round(self.seconds, 1),
        }
