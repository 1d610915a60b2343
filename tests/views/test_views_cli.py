"""``eossl views synth | plan | build`` through the command line."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from eossl.cli.main import app
from eossl.data.store import SampleStore


def test_synth_plan_and_build_from_the_command_line(tmp_path) -> None:
    runner = CliRunner()
    tiles = tmp_path / "tiles"
    done = runner.invoke(app, ["views", "synth", str(tiles), "--tiles", "8", "--size", "64"])
    assert done.exit_code == 0, done.output
    done = runner.invoke(app, ["views", "plan", str(tiles), "--patch-size", "12", "--out", str(tmp_path / "plan")])
    assert done.exit_code == 0, done.output
    assert "degree histogram" in done.output and "expected patches" in done.output
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert plan["statistics"]["tiles"] == 9 and len(plan["duplicates"]) == 1
    assert (tmp_path / "plan" / "plan.png").read_bytes()[:4] == b"\x89PNG"
    store = tmp_path / "store"
    done = runner.invoke(app, ["views", "build", str(tiles), str(store), "--patch-size", "12", "--workers", "0"])
    assert done.exit_code == 0, done.output
    assert "places" in done.output and SampleStore(store).dates.group == "location_id"
    again = runner.invoke(app, ["views", "build", str(tiles), str(store), "--patch-size", "12", "--workers", "0"])
    assert again.exit_code == 2 and "already exists" in again.output
    bad = runner.invoke(app, ["views", "plan", str(tmp_path / "nowhere")])
    assert bad.exit_code == 2 and "does not exist" in bad.output
