#!/usr/bin/env bash
# A learning-rate × depth sweep in plain shell, the way sweeps are usually scripted: each run
# prints its summary as one JSON line (--json), which jq turns into a results table.
# (`llmkit sweep` does the same with skipping, failure reports and plots built in.)
#
#   bash examples/sweep.sh                  # tiny CPU runs on the built-in corpus
#   STEPS=2000 RECIPE=gpt2-small bash examples/sweep.sh
#   LRS="1e-4 3e-4 1e-3" LAYERS="2 4" bash examples/sweep.sh                      # another grid
#   ARGS="--set tokenizer.path=runs/tokenizer-byte-bpe" bash examples/sweep.sh   # flags for every run
set -euo pipefail

RECIPE=${RECIPE:-gpt2-tiny}
STEPS=${STEPS:-100}
OUT=${OUT:-runs/shell-sweep}
LRS=${LRS:-3e-4 1e-3}
LAYERS=${LAYERS:-1 2}
read -r -a EXTRA <<< "${ARGS:-}"
mkdir -p "$OUT"
: > "$OUT/results.jsonl"

for lr in $LRS; do
  for layers in $LAYERS; do
    run="$OUT/lr=$lr-layers=$layers"
    if [[ -f "$run/metrics.json" ]]; then
      echo "skip $run (finished)"
      jq -c . "$run/metrics.json" >> "$OUT/results.jsonl"
      continue
    fi
    # A failed run must not end the sweep: note it and go on.
    if llmkit pretrain-clm --recipe "$RECIPE" --output-dir "$run" --json \
        --set train.lr="$lr" --set model.layers="$layers" --set train.max_steps="$STEPS" \
        ${EXTRA[@]+"${EXTRA[@]}"} | tail -1 >> "$OUT/results.jsonl"; then
      echo "done $run"
    else
      echo "FAILED $run (exit ${PIPESTATUS[0]})" >&2
    fi
  done
done

# One line per run: where, learning rate, depth, final eval loss, tokens/s.
jq -r '[.output_dir, .eval_loss, .eval_perplexity, .tokens_per_second] | @tsv' \
  "$OUT/results.jsonl" | column -t
llmkit report "$OUT"/lr=* --output "$OUT/report"
