"""``eossl study label-efficiency`` end to end on the test preset: every stage runs under one budget rule,
the claim gets a verdict, labels saved is refused against an unconverged reference, and a rerun resumes."""

from __future__ import annotations

import pandas as pd
import pytest

from eossl.evaluation.results import load_results
from eossl.studies.label_efficiency import PRESETS, run_label_efficiency_study


@pytest.mark.slow
def test_study_gives_every_init_the_same_budget_and_a_verdict(tmp_path):
    out = tmp_path / "study"
    path = run_label_efficiency_study(out, "test", log=lambda _: None)
    text = path.read_text()
    budgets = PRESETS["test"]["budgets"]
    for section in ("## Pretraining compute", "## The claim: pretrained on 10% of the labels vs from scratch on 100%",
                    "## Labels saved against the from-scratch reference"):  # fmt: skip
        assert section in text
    for steps in budgets:
        assert f"| simclr-{steps} | {steps} | 16 |" in text  # compute row: steps and batch
    assert text.count("| simclr-") >= 2 * len(budgets) and ("holds" in text or "not shown" in text)
    results = pd.concat([load_results(out / f"eval-{s}").assign(init=f"simclr-{s}") for s in budgets]
                        + [load_results(out / "eval-scratch")])  # fmt: skip
    trained = results[(results.protocol == "finetune") & (results.metric == "accuracy")]
    # one budget rule: at each fraction every init trains for the same number of budget steps
    per_fraction = trained.groupby("fraction").budget_steps.nunique()
    assert (per_fraction == 1).all() and set(trained.init) == {"random", *(f"simclr-{s}" for s in budgets)}
    assert set(trained.encoder_lr_factor) <= {1.0, 0.1} and trained.converged.notna().all()
    assert set(trained.stopped) <= {"early", "budget"} and (trained.steps <= trained.budget_steps).all()
    # a reference that had not converged is trained longer (epochs doubled, up to the preset's maximum), and
    # its convergence decides whether labels saved is stated
    reference = trained[(trained.init == "random") & (trained.fraction == 1.0)]
    longer = sorted(out.glob("reference-*-epochs"), key=lambda p: int(p.name.split("-")[1]))
    assert bool(longer) == (not reference.converged.astype(bool).all())
    if longer:
        assert longer[0].name == "reference-2-epochs"  # the test preset's 1 epoch, doubled
        final = load_results(longer[-1])
        reference = final[(final.protocol == "finetune") & (final.metric == "accuracy")]
        assert f"trained for {longer[-1].name.split('-')[1]} epochs" in text
    if reference.converged.astype(bool).all():
        assert "converged, with" in text and "no labels-saved number" not in text
    else:
        assert "no labels-saved number" in text and "still improving" in text
    assert (out / "report" / "report.md").exists() and (out / "label_efficiency.png").exists()
    # a second call finds every stage done and only rewrites study.md
    again: list[str] = []
    run_label_efficiency_study(out, "test", log=again.append)
    assert not any("evaluated in" in line or "synthesising" in line for line in again)
