import numpy as np
import pandas as pd
import pytest
import torch

from eossl.evaluation.features import image_statistics
from eossl.evaluation.linear_probe import fit_linear
from eossl.evaluation.metrics import multi_label_metrics, single_label_metrics
from eossl.evaluation.report import render_markdown, summarise


def test_linear_probe_separates_separable_data():
    torch.manual_seed(0)
    x = torch.randn(200, 5)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    probe = fit_linear(x, y, "classification", weight_decay=1e-4)
    assert (probe.logits(x).argmax(1) == y).float().mean() > 0.97
    ml = torch.stack([y, 1 - y, (x[:, 2] > 0).long()], 1)
    probe = fit_linear(x, ml, "multilabel", weight_decay=1e-4)
    assert ((probe.logits(x) > 0).long() == ml).float().mean() > 0.95
    target = 2 * x[:, 0] - x[:, 3] + 0.5
    ridge = fit_linear(x, target, "regression", weight_decay=0.0)
    assert ridge.logits(x).shape == (200,) and torch.allclose(ridge.logits(x), target, atol=1e-3)


def test_metrics_on_hand_computed_examples():
    logits = torch.tensor([[2.0, 0, 0], [0, 2.0, 0], [0, 2.0, 0], [0, 0, 2.0]])
    m = single_label_metrics(logits, torch.tensor([0, 1, 2, 2]), 3)
    assert m["accuracy"] == pytest.approx(0.75)
    # F1 per class: 1, 2/3, 2/3
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    targets = torch.tensor([[1, 0], [0, 1], [1, 1]])
    ml_logits = torch.tensor([[5.0, -5], [-5, 5], [5, -5]])
    m = multi_label_metrics(ml_logits, targets, 2)
    assert m["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 1))  # tp=3, fn=1, fp=0
    # AP class 0 = 1; class 1 ranks its positives 1st and tied-last with a negative -> (1 + 2/3) / 2
    assert m["mAP"] == pytest.approx((1.0 + (1 + 2 / 3) / 2) / 2)


def test_segmentation_and_regression_metrics_by_hand():
    from eossl.evaluation.metrics import regression_metrics, segmentation_metrics

    truth = torch.tensor([[[0, 0], [1, 2]]])  # 1 map of 2x2 pixels, classes 0, 1, 2 present; 3 absent
    pred = torch.tensor([[[0, 1], [1, 2]]])
    logits = torch.nn.functional.one_hot(pred, 4).permute(0, 3, 1, 2).float()
    m = segmentation_metrics(logits, truth, 4)
    # IoU: class 0 = 1/2, class 1 = 1/2, class 2 = 1; absent class 3 is skipped
    assert m["pixel_accuracy"] == pytest.approx(0.75) and m["mIoU"] == pytest.approx((0.5 + 0.5 + 1) / 3)
    r = regression_metrics(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([1.0, 2.0, 3.0, 6.0]))
    # residuals 0, 0, 0, -2: MSE 1, MAE 0.5; R2 = 1 - 4 / sum((y - 3)^2) = 1 - 4 / 14
    assert r["rmse"] == pytest.approx(1.0) and r["mae"] == pytest.approx(0.5) and r["r2"] == pytest.approx(1 - 4 / 14)


def test_image_statistics_features():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    f = image_statistics(x)
    assert f.shape == (2, 3 * 5)
    assert torch.allclose(f[:, :3], x.flatten(2).mean(2))
    x[0, 0, 0, 0] = float("nan")
    assert torch.isfinite(image_statistics(x)).all()


def _rows(values: dict[str, list[float]], fraction: float = 0.1, protocol: str = "linear") -> list[dict]:
    return [
        {"init": init, "protocol": protocol, "task": "single-label", "fraction": fraction, "seed": seed,
         "metric": "accuracy", "value": v, "num_labels": 30, "trainable_params": 0}
        for init, per_seed in values.items()
        for seed, v in enumerate(per_seed)
    ]  # fmt: skip


def test_report_tables_comparisons_and_labels_saved():
    from eossl.evaluation.report import comparisons, labels_saved_table

    results = pd.DataFrame(
        _rows({"simclr": [0.80, 0.82, 0.81], "random": [0.50, 0.52, 0.49], "image-stats": [0.60, 0.61, 0.62]})
    )
    summary = summarise(results)
    simclr = summary[summary.init == "simclr"].iloc[0]
    assert simclr["mean"] == pytest.approx(0.81) and simclr["std"] == pytest.approx(np.std([0.8, 0.82, 0.81], ddof=1))
    # 95% t-interval: 0.81 +- t(0.975, 2) * 0.01 / sqrt(3) = 0.81 +- 4.3027 * 0.005774
    assert simclr["ci_high"] - 0.81 == pytest.approx(4.302653 * 0.01 / np.sqrt(3), rel=1e-5)
    comps = comparisons(results)
    assert set(zip(comps.a, comps.b, strict=True)) == {("simclr", "random"), ("simclr", "image-stats")}
    vs_random = comps[comps.b == "random"].iloc[0]
    # per-seed differences 0.30, 0.30, 0.32: mean 0.3067, paired t-test significant
    assert vs_random.difference == pytest.approx(0.30667, abs=1e-4) and vs_random.verdict == "A better"
    md = render_markdown(results)
    assert "**0.810 ± 0.010**" in md and "| linear | random | 0.503 ± 0.015" in md
    assert "| linear | simclr vs random | +0.307" in md and "better" in md
    # labels saved: converged from-scratch fine-tuning reaches 0.70 at 100%; simclr's linear curve crosses
    # 0.70 halfway (in log-fraction) between 10% (0.60) and 100% (0.80): sqrt(0.1 * 1.0) = 31.6%
    curve = _rows({"simclr": [0.60, 0.60, 0.60]}, 0.1) + _rows({"simclr": [0.80, 0.80, 0.80]}, 1.0)
    scratch = [{**r, "steps": 300, "budget_steps": 300, "stopped": "early", "converged": True}
               for r in _rows({"random": [0.70, 0.70, 0.70]}, 1.0, protocol="finetune")]  # fmt: skip
    saved = labels_saved_table(pd.DataFrame(curve + scratch))
    row = saved[saved.init == "simclr"].iloc[0]
    assert row.reference == "random (finetune)" and row.fraction_needed == pytest.approx(np.sqrt(0.1))
    assert row.reference_status == "converged" and row.seeds_reached == 3 and not row.refused
    assert row.low == pytest.approx(np.sqrt(0.1)) == pytest.approx(row.high)  # every seed crosses at the same place
    assert "31.6% of the labels" in render_markdown(pd.DataFrame(curve + scratch))
    # seeds that cross at different fractions give an interval around the mean curve's crossing
    spread = _rows({"simclr": [0.65, 0.60, 0.55]}, 0.1) + _rows({"simclr": [0.80, 0.80, 0.80]}, 1.0)
    row = labels_saved_table(pd.DataFrame(spread + scratch)).iloc[0]
    assert row.low < row.fraction_needed < row.high


def test_labels_saved_is_refused_against_a_reference_that_had_not_converged():
    """One seed of the from-scratch reference still improving at the end of its budget: no number, and why."""
    from eossl.evaluation.report import labels_saved_table

    curve = _rows({"simclr": [0.60, 0.60, 0.60]}, 0.1) + _rows({"simclr": [0.80, 0.80, 0.80]}, 1.0)
    scratch = [{**r, "steps": 300, "budget_steps": 300, "stopped": "budget", "converged": r["seed"] != 1}
               for r in _rows({"random": [0.70, 0.70, 0.70]}, 1.0, protocol="finetune")]  # fmt: skip
    row = labels_saved_table(pd.DataFrame(curve + scratch)).iloc[0]
    assert row.reference_status == "not converged" and pd.isna(row.fraction_needed)
    assert "1 of 3 seeds of the reference were still improving at the end of 300 steps" in row.refused
    report = render_markdown(pd.DataFrame(curve + scratch))
    assert "no labels-saved number: 1 of 3 seeds" in report and "of the labels**" not in report
    assert "| finetune | random | single-label | 100% | 300 | 300 | – | 0/3 | 2/3 † | – |" in report
    # results without convergence records (older than schema 5): unknown, refused as well
    unknown = [{k: v for k, v in r.items() if k not in ("converged", "stopped")} for r in scratch]
    row = labels_saved_table(pd.DataFrame(curve + unknown)).iloc[0]
    assert row.reference_status == "unknown" and "not recorded" in row.refused
    # a probe on random features is no reference: without from-scratch fine-tuning at 100% nothing is stated
    probe = _rows({"random": [0.76, 0.76, 0.76]}, 1.0)
    assert labels_saved_table(pd.DataFrame(curve + probe)).empty
    assert "No labels-saved number: it needs the from-scratch reference" in render_markdown(pd.DataFrame(curve + probe))


def test_knn_votes_are_similarity_weighted_by_hand():
    from eossl.models.knn import knn_accuracy, knn_scores

    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    query = torch.tensor([[1.0, 0.05], [0.2, 1.0]])
    scores = knn_scores(bank, labels, query, k=4, temperature=1.0, num_classes=3)
    sims = torch.nn.functional.normalize(query, dim=1) @ torch.nn.functional.normalize(bank, dim=1).T
    weights = sims.exp() / sims.exp().sum(1, keepdim=True)
    expected = torch.stack([weights[:, :2].sum(1), weights[:, 2:].sum(1), torch.zeros(2)], dim=1)
    assert torch.allclose(scores, expected, atol=1e-6)
    assert knn_accuracy(bank, labels, query, torch.tensor([0, 1]), k=2) == 1.0
    multi = knn_scores(bank, torch.tensor([[1, 0], [1, 1], [0, 1], [0, 1]]), query[:1], k=2, temperature=1.0)
    w = sims[0, :2].exp() / sims[0, :2].exp().sum()
    assert torch.allclose(multi[0], torch.stack([w.sum(), w[1]]), atol=1e-6)


def test_multi_label_metrics_with_a_single_class_present():
    """A tiny test split (a real 6-patch BigEarthNet import) may hold one class only: metrics over it."""
    targets = torch.zeros(2, 5)
    targets[:, 2] = 1
    logits = torch.full((2, 5), -3.0)
    logits[:, 2] = 3.0
    metrics = multi_label_metrics(logits, targets, 5)
    assert metrics["mAP"] == 1.0 and metrics["macro_f1"] == 1.0 and metrics["micro_f1"] == 1.0
