"""Stages shared by the dense studies (segmentation, change detection, hyperspectral): a synthetic store,
pretraining runs and evaluations, each in its own folder and skipped when its result exists (an
interrupted study resumes), and the mean-over-seeds tables the studies print."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from eossl.config import EvaluateConfig, PretrainConfig, validate_config
from eossl.data.synth.generator import SynthSpec, synthesize_store
from eossl.evaluation.results import load_results
from eossl.evaluation.runner import run_evaluate
from eossl.methods.pretrain import run_pretrain

Log = Callable[[str], None]


def store_stage(path: Path, spec: SynthSpec, log: Log) -> Path:
    """The study's synthetic store (generated once)."""
    if not path.exists():
        log(f"synthesising {spec.num_samples} samples into {path}")
        synthesize_store(path, spec)
    return path


def pretrain_config(store: Path, modality: str, encoder: dict, method: str, budget: dict) -> dict:
    """A study's pretraining run: ``method`` with ``encoder`` on ``modality`` of ``store`` for the preset's
    ``budget`` (``batch_size``, ``max_steps``), health monitoring's kNN off (the studies evaluate afterwards)."""
    return {"data": {"store": str(store), "modality": modality, "batch_size": budget["batch_size"]},
            "encoder": encoder, "method": {"name": method},
            "trainer": {"max_steps": budget["max_steps"], "max_epochs": 100_000, "progress_bar": False},
            "health": {"knn_every_n_steps": 0}}  # fmt: skip


def pretrain_stage(out: Path, raw: dict, log: Log) -> Path:
    """The checkpoint of a pretraining run of config ``raw`` into ``out`` (run once)."""
    checkpoint = out / "checkpoints" / "last.ckpt"
    if checkpoint.exists():
        return checkpoint
    log(f"pretraining {raw['method']['name']} / {raw['encoder']['name']} into {out}")
    cfg = validate_config(PretrainConfig, {"out": str(out), **raw}, source=f"study config ({out.name})")
    return run_pretrain(cfg)


def evaluate_stage(out: Path, raw: dict, log: Log) -> pd.DataFrame:
    """The results of an evaluation of config ``raw`` into ``out`` (run once; reread when its report exists)."""
    if (out / "report.md").exists():
        return load_results(out)
    log(f"evaluating into {out}")
    cfg = validate_config(EvaluateConfig, {"out": str(out), **raw}, source=f"study config ({out.name})")
    return run_evaluate(cfg, log=log)


def mean_std(values: pd.Series, scale: float = 100.0) -> str:
    """``86.4 ± 0.7`` (percent by default) over seeds; a single seed without the spread."""
    mean = values.mean() * scale
    return f"{mean:.1f}" if len(values) < 2 else f"{mean:.1f} ± {values.std() * scale:.1f}"


def metric_table(results: pd.DataFrame, rows: Sequence[str], metrics: Sequence[tuple[str, str]],
                 order: Sequence[tuple] | None = None) -> str:  # fmt: skip
    """A markdown table: one row per distinct value of the ``rows`` columns (in ``order`` when given),
    one column per ``(metric, heading)``, cells mean ± std over seeds in percent."""
    cells: dict[tuple, dict[str, str]] = {}
    for key, part in results.groupby(list(rows), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        cells[key] = {m: mean_std(part[part.metric == m].value) for m, _ in metrics if (part.metric == m).any()}
    keys = [k for k in order if k in cells] if order is not None else list(cells)
    header = [*rows, *(heading for _, heading in metrics)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(rows) + "---:|" * len(metrics)]
    for key in keys:
        lines.append("| " + " | ".join([*map(str, key), *(cells[key].get(m, "—") for m, _ in metrics)]) + " |")
    return "\n".join(lines)
