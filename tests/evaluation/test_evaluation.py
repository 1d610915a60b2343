import numpy as np
import pandas as pd
import pytest
import torch

from eossl.evaluation.features import image_statistics
from eossl.evaluation.linear_probe import fit_linear
from eossl.evaluation.metrics import classification_metrics
from eossl.evaluation.report import render_markdown, summarise, verdicts


def test_linear_probe_separates_separable_data():
    torch.manual_seed(0)
    x = torch.randn(200, 5)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    probe = fit_linear(x, y, multilabel=False, weight_decay=1e-4)
    assert (probe.logits(x).argmax(1) == y).float().mean() > 0.97
    ml = torch.stack([y, 1 - y, (x[:, 2] > 0).long()], 1)
    probe = fit_linear(x, ml, multilabel=True, weight_decay=1e-4)
    assert ((probe.logits(x) > 0).long() == ml).float().mean() > 0.95


def test_metrics_on_hand_computed_examples():
    logits = torch.tensor([[2.0, 0, 0], [0, 2.0, 0], [0, 2.0, 0], [0, 0, 2.0]])
    m = classification_metrics("single-label", logits, torch.tensor([0, 1, 2, 2]), 3)
    assert m["accuracy"] == pytest.approx(0.75)
    # F1 per class: 1, 2/3, 2/3
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    targets = torch.tensor([[1, 0], [0, 1], [1, 1]])
    ml_logits = torch.tensor([[5.0, -5], [-5, 5], [5, -5]])
    m = classification_metrics("multi-label", ml_logits, targets, 2)
    assert m["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 1))  # tp=3, fn=1, fp=0
    # AP class 0 = 1; class 1 ranks its positives 1st and tied-last with a negative -> (1 + 2/3) / 2
    assert m["mAP"] == pytest.approx((1.0 + (1 + 2 / 3) / 2) / 2)


def test_image_statistics_features():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    f = image_statistics(x)
    assert f.shape == (2, 3 * 5)
    assert torch.allclose(f[:, :3], x.flatten(2).mean(2))
    x[0, 0, 0, 0] = float("nan")
    assert torch.isfinite(image_statistics(x)).all()


def test_report_tables_and_verdicts():
    rows = []
    for seed, (a, b, c) in enumerate([(0.80, 0.50, 0.60), (0.82, 0.52, 0.61), (0.81, 0.49, 0.62)]):
        for init, v in (("simclr", a), ("random", b), ("image-stats", c)):
            rows.append(
                {
                    "init": init,
                    "protocol": "linear",
                    "task": "single-label",
                    "fraction": 0.1,
                    "seed": seed,
                    "metric": "accuracy",
                    "value": v,
                    "num_labels": 30,
                    "trainable_params": 100,
                }
            )
    results = pd.DataFrame(rows)
    summary = summarise(results)
    simclr = summary[summary.init == "simclr"].iloc[0]
    assert simclr["mean"] == pytest.approx(0.81) and simclr["std"] == pytest.approx(np.std([0.8, 0.82, 0.81], ddof=1))
    lines = verdicts(summary)
    assert len(lines) == 2 and all(line.startswith("PASS") for line in lines)
    md = render_markdown(results)
    assert "**0.810 ± 0.010**" in md and "| linear | random | 0.503 ± 0.015 |" in md


def test_knn_votes_are_similarity_weighted_by_hand():
    from eossl.evaluation.knn import knn_accuracy, knn_scores

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
