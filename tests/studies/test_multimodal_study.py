"""``eossl study multimodal`` end to end on the test preset: every stage runs, resumes, and fills study.md."""

from __future__ import annotations

import pytest

from eossl.studies.multimodal import run_multimodal_study


@pytest.mark.slow
def test_study_runs_every_stage_and_resumes(tmp_path):
    logs: list[str] = []
    path = run_multimodal_study(tmp_path / "study", "test", log=logs.append)
    text = path.read_text()
    assert "## (a) Dual-SimCLR (s2 + s1) vs SimCLR (s2) vs random" in text
    for row in ("| linear | simclr · s2 |", "| linear | dual-simclr · s2 |", "| linear | random · s2 |",
                "| finetune | dual-simclr · s2+s1 late-concat |"):  # fmt: skip
        assert row in text
    assert "| random | finetune | s2+s1 late-concat (s1 missing) |" in text
    assert "| random | finetune | s1+meta early |" in text
    assert "## (c) Multi-task vs single-task" in text and "multitask-uncertainty vs finetune" in text
    for stage in ("eval-simclr", "eval-dual-simclr", "fusion", "multitask", "label-efficiency"):
        assert (tmp_path / "study" / stage / "report.md").exists()
    # a second call finds every stage done and only rewrites study.md
    again: list[str] = []
    run_multimodal_study(tmp_path / "study", "test", log=again.append)
    assert not any("evaluated in" in line or "synthesising" in line for line in again)
