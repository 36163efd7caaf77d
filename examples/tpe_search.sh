#!/usr/bin/env bash
# A TPE search over learning rate, warmup and weight decay for the tiny GPT-2 on the built-in
# corpus, with median pruning: each trial evaluates every 20 steps, and a trial behind the
# median of the finished ones at the same step stops there.
#
#   bash examples/tpe_search.sh                  # 12 trials, a few CPU minutes
#   TRIALS=30 STEPS=500 bash examples/tpe_search.sh
set -euo pipefail

TRIALS=${TRIALS:-12}
STEPS=${STEPS:-100}
OUT=${OUT:-runs/tpe-search}

llmkit sweep pretrain-clm --recipe gpt2-tiny --output-dir "$OUT" \
  --space train.lr=loguniform:1e-4:3e-3 \
  --space train.warmup=uniform:0:0.2 \
  --space train.weight_decay=loguniform:1e-4:1e-1 \
  --trials "$TRIALS" --prune median \
  --set train.max_steps="$STEPS" --set train.eval_every=20 --json | tail -1 \
  | jq '{best: .best, pruned: .pruned, trials: .points}'

echo "report: $OUT/report/report.md"
