#!/usr/bin/env bash
# Fine-tune one model on every GLUE task found in a folder of the standard GLUE layout
# (<TASK>/train.tsv and dev.tsv), then print one table of dev metrics.
#   recipes/sweeps/glue-all.sh runs/bert-small ../shared/data/glue
#   recipes/sweeps/glue-all.sh runs/bert-small ../shared/data/glue --set train.epochs=1
# Runs go to runs/glue-all/<task>/; extra arguments are passed to every `llmkit finetune`.
set -euo pipefail
model=${1:?usage: glue-all.sh MODEL_DIR GLUE_DIR [llmkit finetune options...]}
glue=${2:?usage: glue-all.sh MODEL_DIR GLUE_DIR [llmkit finetune options...]}
shift 2
out=${GLUE_ALL_OUTPUT:-runs/glue-all}
mkdir -p "$out"
results="$out/results.jsonl"
: > "$results"

# task name, folder, recipe (tasks without a recipe of their own borrow one with the same shape)
tasks="cola:CoLA:glue-cola sst2:SST-2:glue-sst2 mrpc:MRPC:glue-mrpc qqp:QQP:glue-mrpc
stsb:STS-B:glue-stsb mnli:MNLI:glue-rte qnli:QNLI:glue-rte rte:RTE:glue-rte wnli:WNLI:glue-rte"
for entry in $tasks; do
  IFS=: read -r task folder recipe <<< "$entry"
  dev=dev.tsv; [ "$task" = mnli ] && dev=dev_matched.tsv
  [ -f "$glue/$folder/train.tsv" ] && [ -f "$glue/$folder/$dev" ] || continue
  echo "== glue/$task" >&2
  if llmkit finetune --recipe "$recipe" --set "task.name=glue/$task" --set "model.path=$model" \
      --set "task.data_dir=$glue/$folder" -o "$out/$task" --overwrite --json "$@" \
      | tail -n 1 >> "$results"; then :; else echo "glue/$task failed" >&2; fi
done

python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
print(f"{'task':12} {'metric':22} {'dev':>8} {'majority':>9}")
for row in rows:
    for key, value in row.items():
        if key.startswith("eval_") and not key.endswith(("_loss", "_examples", "_majority_accuracy")):
            majority = row.get(key.rsplit("_", 1)[0] + "_majority_accuracy", row.get("eval_majority_accuracy", ""))
            majority = f"{majority:.3f}" if isinstance(majority, float) and "accuracy" in key else ""
            print(f"{row['task']:12} {key[5:]:22} {value:8.3f} {majority:>9}")
PY
