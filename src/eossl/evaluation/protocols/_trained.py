"""The loop shared by the trained protocols: per task, fraction and seed, train a copy of the encoder
with a new head on the labelled subset, streamed from the store, then test it."""

from __future__ import annotations

import time

from eossl.evaluation.context import InitRun
from eossl.evaluation.finetune import predict, train_task_model
from eossl.evaluation.protocols._trained_config import TrainedProtocolConfig
from eossl.models.adapters import AdapterOptions


def train_and_test(run: InitRun, protocol: str, mode: str, section: TrainedProtocolConfig, tasks: list[str],
                   fractions: list[float], options: AdapterOptions | None = None) -> None:  # fmt: skip
    """Train and test ``mode`` (see :data:`eossl.models.adapters.ADAPTERS`) on every run; rows under ``protocol``."""
    started, data, combo = time.perf_counter(), run.data, run.setting.combo
    for task, fraction, seed, subset in run.runs(tasks=tasks, fractions=fractions):
        target = [task.target.name]
        result = train_task_model(
            run.encoder, run.normalizer, run.modality, task, data.dataset("train", combo, target, subset),
            data.dataset("val", combo, target), section, mode, accelerator=run.cfg.accelerator, seed=seed,
            adapter_options=options,
        )  # fmt: skip
        device = run.evaluation.device
        outputs = predict(result.model, run.test_inputs(), device)
        degraded = {a: predict(result.model, run.test_inputs(absent=a), device) for a in run.missing_at_test()}
        extra = {
            "encoder": run.encoder_name, "num_labels": len(subset), "trainable_params": result.trainable_encoder_params,
            "head_params": result.head_params, "steps": result.steps, "best_step": result.best_step,
        }  # fmt: skip
        run.record(run.key(protocol, task, fraction, seed), outputs, degraded, result.history, extra, max(fractions))
    run.evaluation.log(f"  {run.setting.label:<14} {run.init:<12} {protocol:<16} {time.perf_counter() - started:.0f}s")
    run.evaluation.sink.flush()
