#!/usr/bin/env bash
# Several instance models trained side by side on one GPU within a wall-clock budget, with the schedule of
# research/train_instance.sh (same optimiser, warm-up, crops, seed); only the number of epochs is chosen here:
# a 40-iteration probe of all models at once measures seconds per iteration, then each pair of models that
# is compared gets the largest common epoch count that fits the budget (slower member + 10% margin).
# Usage: bash research/train_instance_budget.sh DATASET BUDGET_S "MODEL_A,MODEL_B" ["MODEL_C,MODEL_D" ...]
#   BUDGET_S: seconds for probe + training + the final validation of every run.
# Env: as train_instance.sh (DATA, RUNS, WORKERS, THREADS, RSSEG, DEVICE), plus
#      EVAL_RESERVE_S (seconds kept for the final validation, default 60).
# Output: RUNS/DATASET_MODEL/{log.jsonl,best.pt,last.pt} per model, RUNS/plan.json (the epochs chosen).
set -uo pipefail
cd "$(dirname "$0")/.."
DATASET=${1:?usage: $0 DATASET BUDGET_S PAIR...}
BUDGET=${2:?usage: $0 DATASET BUDGET_S PAIR...}
shift 2
RUNS=${RUNS:-runs}
EVAL_RESERVE_S=${EVAL_RESERVE_S:-60}
export RUNS
start=$(date +%s)
models=$(echo "$@" | tr ', ' '\n\n' | grep -v '^$')
for m in $models; do  # a warm machine keeps /tmp: an old run there would resume, not train
  if [ -e "$RUNS/${DATASET}_$m/last.pt" ]; then
    echo "$RUNS/${DATASET}_$m/last.pt exists: the run would resume from it; use a fresh RUNS folder" >&2; exit 2
  fi
done

# 1. Probe: every model at once, as in the real run, 40 iterations each.
for m in $models; do
  PROBE=40 bash research/train_instance.sh "$DATASET" "$m" > "$RUNS/probe_${DATASET}_$m.log" 2>&1 &
done
wait
probe_s=$(( $(date +%s) - start ))

# 2. Epochs per pair from the probe's seconds per iteration (iterations 20 -> 40).
python3 - "$RUNS" "$DATASET" "$(( BUDGET - probe_s - EVAL_RESERVE_S ))" "$@" <<'EOF'
import json, math, sys
from pathlib import Path
runs, dataset, seconds, pairs = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4:]
images = len(json.loads((runs / "splits" / dataset / "train.json").read_text())["images"])
iters_per_epoch = math.ceil(images / 2)
speed, plan = {}, {}
for pair in pairs:
    members = [m for m in pair.split(",") if m]
    for m in members:
        log = runs / f"probe_{dataset}_{m}" / "log.jsonl"
        rows = {r["iteration"]: r for r in map(json.loads, log.read_text().splitlines())
                if r.get("type") == "train"} if log.is_file() else {}
        speed[m] = (rows[40]["elapsed_s"] - rows[20]["elapsed_s"]) / 20 if 20 in rows and 40 in rows else None
    known = [speed[m] for m in members if speed[m]]
    epochs = max(1, int(seconds / (1.1 * max(known) * iters_per_epoch))) if known else 0
    plan.update({m: epochs if speed[m] else 0 for m in members})
(runs / "plan.json").write_text(json.dumps({"seconds_for_training": seconds, "iters_per_epoch": iters_per_epoch,
                                            "seconds_per_iteration": speed, "epochs": plan}, indent=1))
print(json.dumps(plan))
EOF

# 3. The real runs, all at once; a run past the budget is stopped so that the others' results come back.
deadline=$(( start + BUDGET + 30 ))
for m in $models; do
  epochs=$(python3 -c "import json,sys; print(json.load(open('$RUNS/plan.json'))['epochs']['$m'])")
  [ "$epochs" -gt 0 ] || { echo "skip $m: its probe failed (see $RUNS/probe_${DATASET}_$m.log)"; continue; }
  echo "$m: $epochs epochs"
  EPOCHS=$epochs timeout $(( deadline - $(date +%s) )) bash research/train_instance.sh "$DATASET" "$m" \
    > "$RUNS/train_${DATASET}_$m.log" 2>&1 &
done
wait
echo "all runs: $(( $(date +%s) - start )) s of a $BUDGET s budget"
