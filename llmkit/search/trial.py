"""Inside a trial's training process: the callback through which its evaluations reach the
study and it learns it was pruned. The search sets LLMKIT_TRIAL for a trial's process; the
commands that train pass `trial_callbacks()` to their Trainer."""

from __future__ import annotations

import json
import os
from pathlib import Path

from transformers import TrainerCallback

from llmkit.search.study import PRUNED_FILE, STUDY_NAME, TRIAL_ENV, make_pruner


class TrialReporter(TrainerCallback):
    """In a trial's training process: each evaluation of the searched metric goes to the study,
    and when the pruner says stop, training stops cleanly (the run finishes with a final
    evaluation and its files, marked by pruned.json)."""

    def __init__(self, storage: str, trial_id: int, metric: str, pruner: str):
        import optuna

        self.metric = metric
        study = optuna.load_study(
            storage=storage, study_name=STUDY_NAME, pruner=make_pruner(pruner)
        )
        self.trial = optuna.Trial(study, trial_id)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not metrics or self.metric not in metrics or state.global_step == 0:
            return
        if not state.is_world_process_zero:
            return
        self.trial.report(float(metrics[self.metric]), state.global_step)
        if self.trial.should_prune():
            control.should_training_stop = True
            marker = Path(args.output_dir) / PRUNED_FILE
            marker.write_text(
                json.dumps({"step": state.global_step, self.metric: metrics[self.metric]})
            )


def trial_callbacks() -> list[TrainerCallback]:
    """The reporter when this process is a search trial (the sweep sets LLMKIT_TRIAL), else
    nothing."""
    spec = os.environ.get(TRIAL_ENV)
    if not spec:
        return []
    trial = json.loads(spec)
    return [TrialReporter(trial["storage"], trial["trial_id"], trial["metric"], trial["pruner"])]
