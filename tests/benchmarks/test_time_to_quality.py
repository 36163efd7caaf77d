"""benchmarks/time_to_quality.py: when a run first reached a loss, read off its curve."""

import pytest

from benchmarks.time_to_quality import time_to


def test_the_time_to_a_loss_is_interpolated_between_evaluations():
    run = {"curve": [(0, 8.0), (100, 6.0), (200, 5.0), (300, 4.5)], "seconds_per_step": 0.5}
    assert time_to(run, 5.5) == pytest.approx(150 * 0.5)  # halfway from step 100 to 200
    assert time_to(run, 5.0) == pytest.approx(200 * 0.5)
    assert time_to(run, 9.0) == 0.0  # reached before training
    assert time_to(run, 4.0) is None  # never reached
