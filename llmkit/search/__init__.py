"""Hyper-parameter search on Optuna, in one place:

  space.py   search spaces as typed on the command line (`--space KEY=KIND:ARGS`, `--grid`)
  runs.py    what a sweep was asked (`Sweep`), a point's command line and its process
  study.py   the study in SQLite (sampler, pruner, recovery of a killed search), read back
  driver.py  the search itself: trials run `parallel` at a time until the budget is spent
  trial.py   inside a trial's training process: its evaluations reported to the pruner

`llmkit sweep` (commands/sweep.py) runs plain grids itself and searches through `driver`.
"""
