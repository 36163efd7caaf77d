"""benchmarks/time_to_quality.py: when a run first reached a loss, read off its curve."""

import pytest

from benchmarks.time_to_quality import time_to


def test_the_time_to_a_loss_is_interpolated_between_evaluations():
    run = {"curve": [(0, 8.0), (100, 6.0), (200, 5.0), (300, 4.5)], "seconds_per_step": 0.5}
    assert time_to(run, 5.5) == pytest.approx(150 * 0.5)  # halfway from step 100 to 200
    assert time_to(run, 5.0) == pytest.approx(200 * 0.5)
    assert time_to(run, 9.0) == 0.0  # reached before training
    assert time_to(run, 4.0) is None  # never reached


def test_the_report_gives_each_run_its_share_of_the_baselines_time(tmp_path, monkeypatch):
    import json

    from benchmarks import time_to_quality

    monkeypatch.setattr(time_to_quality, "OUT", tmp_path)
    curve = [(0, 8.0), (100, 5.0), (200, 4.0)]
    figures = {"tokens_per_second": 1.0, "parameters": 1}
    runs = {
        "base": {"curve": curve, "final_loss": 4.0, "seconds_per_step": 1.0, **figures},
        # reaches 4.0 at step 100, and twice as fast a step: a quarter of the baseline's time
        "new": {"curve": [(0, 8.0), (100, 4.0)], "final_loss": 3.5, "seconds_per_step": 0.5},
        "slow": {"curve": curve[:2], "final_loss": 5.0, "seconds_per_step": 1.0},
    }
    runs["new"] |= figures
    runs["slow"] |= figures
    time_to_quality.report("probe", runs, "base", 200, best_muon="new")
    written = json.loads((tmp_path / "probe.json").read_text())
    shares = {name: run["share_of_baseline_time"] for name, run in written["runs"].items()}
    assert shares == {"base": 1.0, "new": 0.25, "slow": None}
    assert written["target_loss"] == 4.0 and written["best_muon"] == "new"
