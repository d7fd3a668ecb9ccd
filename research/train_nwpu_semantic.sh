#!/usr/bin/env bash
# NWPU VHR-10 semantic comparison (docs/experiments-semantic.md): one schedule for Semantic FPN, FarSeg and
# Hi-ResNet on 11-class maps, then C2FNet's fine model on top of the trained Semantic FPN.
# Usage: bash research/train_nwpu_semantic.sh MODEL
#   MODEL: semantic_fpn | farseg | hi_resnet | c2fnet | semantic_fpn_scratch (ResNet-18 from scratch, as
#   Hi-ResNet has no pretrained weights here) | farseg_ce (ablation: plain cross-entropy instead of F-A)
# Env: DATA (default ../shared/data), RUNS (default runs), EPOCHS (default 4), THREADS (default 1),
#      RSSEG (the CLI, default .venv/bin/rsseg), COARSE (c2fnet's trained coarse run, default semantic_fpn),
#      INIT (a checkpoint to start from: a warm restart, a new schedule on trained weights; not for c2fnet),
#      RUN_SUFFIX (appended to the run folder name, e.g. _restart).
# Each run resumes from RUNS/nwpu_MODEL/last.pt, so re-running the same line continues it.
set -euo pipefail
cd "$(dirname "$0")/.."
# This checkout's engine comes first: a worktree that shares another checkout's .venv (an editable install of
# that checkout) would otherwise train with the other checkout's code, not the commit it was made from.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
DATA=${DATA:-../shared/data}
RUNS=${RUNS:-runs}
EPOCHS=${EPOCHS:-4}
THREADS=${THREADS:-1}
RSSEG=${RSSEG:-.venv/bin/rsseg}
MODEL=${1:?usage: $0 semantic_fpn|farseg|hi_resnet|c2fnet|semantic_fpn_scratch|farseg_ce}
SPLIT=$RUNS/splits/nwpu
[ -f "$SPLIT/val.json" ] || $RSSEG split --coco "$DATA/nwpu_vhr10/train.json" --out "$SPLIT" --val-fraction 0.2 --seed 0

# The one schedule: AdamW 1e-3, cosine, 100 warm-up iterations, batch 2, 384 px crops, scale jitter 0.8-1.25,
# flips/rot90, seed 0; validation mIoU on the held-out 20% every 2 epochs and at the end.
common=(--coco "$SPLIT/train.json" --images "$DATA/nwpu_vhr10/images" --val-coco "$SPLIT/val.json"
        --sensor optical --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --band-names red,green,blue --gsd 0.5
        --epochs "$EPOCHS" --batch-size 2 --crop-size 384 --optimizer adamw --lr 0.001 --weight-decay 0.0001
        --warmup-iters 100 --eval-every 2 --seed 0 --threads "$THREADS" --workers 1
        --description "NWPU VHR-10 11-class semantic map (validation split: 20% of train.json, seed 0)"
        ${INIT:+--init "$INIT"})
S=${RUN_SUFFIX:-}
LITE0=(--backbone efficientnet_lite0 --pretrained)
case "$MODEL" in
  semantic_fpn) $RSSEG train "${common[@]}" --arch semantic_fpn "${LITE0[@]}" --out "$RUNS/nwpu_semantic_fpn$S" ;;
  farseg) $RSSEG train "${common[@]}" --arch farseg --preset cpu "${LITE0[@]}" --out "$RUNS/nwpu_farseg$S" \
            --config "{\"annealing_steps\": $((EPOCHS * 182 / 6))}" ;;  # the paper: T = 1/6 of the schedule
  farseg_ce) $RSSEG train "${common[@]}" --arch farseg --preset cpu-ce "${LITE0[@]}" --out "$RUNS/nwpu_farseg_ce$S" ;;
  semantic_fpn_scratch) $RSSEG train "${common[@]}" --arch semantic_fpn --backbone resnet18 \
                          --out "$RUNS/nwpu_semantic_fpn_scratch$S" ;;
  hi_resnet) $RSSEG train "${common[@]}" --arch hi_resnet --preset cpu --out "$RUNS/nwpu_hi_resnet$S" ;;
  c2fnet)  # fine model only (the paper's schedule): a trained run (COARSE) is the fixed coarse model
    COARSE=${COARSE:-semantic_fpn}  # semantic_fpn | farseg | ...: the run RUNS/nwpu_COARSE/last.pt
    [ -z "${INIT:-}" ] || { echo "c2fnet: INIT is not used; COARSE names the coarse run" >&2; exit 2; }
    init=$RUNS/nwpu_$COARSE/last.pt
    [ -f "$init" ] || { echo "c2fnet: coarse run '$init' not found; train it first ($0 $COARSE)" >&2; exit 2; }
    out=$RUNS/nwpu_c2fnet; [ "$COARSE" = semantic_fpn ] || out=${out}_$COARSE
    coarse=$($RSSEG info "$init" --json | python3 -c 'import json, sys; s = json.load(sys.stdin)["spec"]
print(json.dumps({"architecture": s["architecture"], "config": s["config"]}))')
    sub='{"architecture": "semantic_fpn", "config": {"backbone": "efficientnet_lite0", "pretrained": true}}'
    $RSSEG train "${common[@]}" --arch c2fnet --out "$out" --init "$init" \
      --config "{\"coarse\": $coarse, \"fine\": $sub, \"small_classes\": [\"vehicle\", \"ship\", \"storage_tank\"],
                 \"window\": 128, \"stride\": 32, \"top_k\": 32, \"train_top_k\": 4, \"zoom\": 1.0,
                 \"train_coarse\": false}" ;;
  *) echo "unknown model '$MODEL'; choose semantic_fpn, farseg, hi_resnet, c2fnet, semantic_fpn_scratch or farseg_ce" >&2
     exit 2 ;;
esac
