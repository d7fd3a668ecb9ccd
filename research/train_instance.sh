#!/usr/bin/env bash
# Instance comparison on SSDD or NWPU VHR-10 (docs/experiments-instance.md): one schedule for Mask R-CNN,
# HQ-ISNet and its ablation, SOLOv2 and FACENet, all on the EfficientNet-Lite0 ImageNet trunk (the only
# pretrained trunk available offline; HRNet from scratch is the `hq_isnet_hrnet` row).
# Usage: bash research/train_instance.sh DATASET MODEL
#   DATASET: ssdd (650 training chips, 325 iterations per epoch) | nwpu (364 images, 182 iterations per epoch)
#   MODEL: mask_rcnn | hq_isnet (HRFPN + ISNetV2) | hq_isnet_v1 (HRFPN + ISNetV1) | hq_isnet_fpn (FPN + ISNetV2)
#          | cascade (FPN + ISNetV1 = Cascade Mask R-CNN) | hq_isnet_hrnet (HRNet-W18 from scratch)
#          | solov2 | solov2_dcn (SOLOv2 + DCNv2 only) | facenet | facenet_nodcn (FACE-FPN + SEM, no DCNv2)
# Env: DATA (default ../shared/data), RUNS (default runs), EPOCHS (default 1), THREADS (default 1),
#      PROBE=N (speed probe: N iterations, no validation, into RUNS/probe_DATASET_MODEL),
#      LR (SGD learning rate, default 0.01), DEVICE (default auto), WORKERS (data-loading processes, default 1),
#      RSSEG (the CLI, default .venv/bin/rsseg; "python3 -m engine" where the engine is on the path),
#      TRUNK (efficientnet_lite0 | efficientnet_lite2, default lite0), FROZEN (trunk blocks frozen, default 3),
#      SCALE (input zoom, default 1), JITTER (scale jitter min,max around SCALE, default 0.8,1.25),
#      AUG (1: SAR gain/gamma/speckle augmentation, default 0), PASTE (crowd copy-paste probability, default off), EVAL_EVERY (epochs between validations, 0: at the end),
#      CHECKPOINT_EVERY (iterations between last.pt saves inside an epoch, default 50: a stop loses at most that),
#      SEED (data order, augmentation and head initialisation, default 0: a second seed measures run-to-run spread).
# Each run resumes from RUNS/DATASET_MODEL/last.pt, so re-running the same line continues it.
set -euo pipefail
cd "$(dirname "$0")/.."
# This checkout's engine comes first: a worktree that shares another checkout's .venv (an editable install of
# that checkout) would otherwise train with the other checkout's code, not the commit it was made from.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
DATA=${DATA:-../shared/data}
RUNS=${RUNS:-runs}
EPOCHS=${EPOCHS:-1}
PROBE=${PROBE:-0}
THREADS=${THREADS:-1}
LR=${LR:-0.01}
DEVICE=${DEVICE:-auto}
WORKERS=${WORKERS:-1}
RSSEG=${RSSEG:-.venv/bin/rsseg}
TRUNK=${TRUNK:-efficientnet_lite0}
FROZEN=${FROZEN:-3}
SCALE=${SCALE:-1}
JITTER=${JITTER:-0.8,1.25}
AUG=${AUG:-0}
DATASET=${1:?usage: $0 ssdd|nwpu MODEL}
MODEL=${2:?usage: $0 ssdd|nwpu mask_rcnn|hq_isnet|hq_isnet_v1|hq_isnet_fpn|cascade|hq_isnet_hrnet|solov2|solov2_dcn|facenet|facenet_nodcn}
case "$DATASET" in
  ssdd) folder=ssdd
        input=(--bands 1 --band-names amplitude --sensor sar --mean 0.5 --std 0.5 --gsd 3.0
               --description "SSDD SAR ships, 1-band amplitude (validation split: 20% of train.json, seed 0)") ;;
  nwpu) folder=nwpu_vhr10
        input=(--band-names red,green,blue --sensor optical --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --gsd 0.5
               --description "NWPU VHR-10, 10 classes, RGB (validation split: 20% of train.json, seed 0)") ;;
  *) echo "unknown dataset '$DATASET'; choose ssdd or nwpu" >&2; exit 2 ;;
esac
SPLIT=$RUNS/splits/$DATASET
[ -f "$SPLIT/val.json" ] || $RSSEG split --coco "$DATA/$folder/train.json" --out "$SPLIT" --val-fraction 0.2 --seed 0

# The one schedule: SGD 0.01 (momentum 0.9), cosine, 100 warm-up iterations, batch 2, 512 px crops, scale
# jitter 0.8-1.25, flips/rot90, seed 0, EPOCHS epochs; validation on the held-out 20% (whole images) at the end.
common=(--coco "$SPLIT/train.json" --images "$DATA/$folder/images" "${input[@]}"
        --epochs "$EPOCHS" --batch-size 2 --crop-size 512 --lr "$LR" --warmup-iters 100
        --schedule cosine --eval-every "${EVAL_EVERY:-0}" --seed "${SEED:-0}" --threads "$THREADS" --workers "$WORKERS" --device "$DEVICE"
        --checkpoint-every "${CHECKPOINT_EVERY:-50}"
        --tile-size 512 --overlap 128 --score-threshold 0.5 --input-scale "$SCALE" --scale-jitter "$JITTER")
[ "$AUG" = 1 ] && common+=(--sar-augment)
[ -n "${PASTE:-}" ] && common+=(--crowd-paste "$PASTE")
LITE0=(--backbone "$TRUNK" --pretrained)
# Slim heads shared by every R-CNN row (the shipped Mask R-CNN's settings).
# Detection limits for crowded anchorages: 1000 proposals and 300 detections per tile.
RCNN='"frozen_blocks": '$FROZEN', "anchor_sizes": [16, 32, 64, 128, 256], "fpn_channels": 128, "representation_size": 512,
      "mask_head_channels": 128, "box_batch_size_per_image": 256, "rpn_pre_nms_top_n_train": 1000,
      "rpn_post_nms_top_n_train": 1000, "rpn_post_nms_top_n_test": 1000, "detections_per_img": 300'
# SOLOv2 at the same width (FPN 128), with the light head (256 channels) of the SOLOv2 paper, and a signed
# mask feature (GroupNorm, no ReLU): with non-negative features the dynamic kernels can push every mask
# logit down at once, and FACENet's Dice loss got stuck at its maximum within 20 iterations.
SOLO='"frozen_blocks": '$FROZEN', "fpn_channels": 128, "head_channels": 256, "mask_feature_channels": 128, "mask_channels": 128,
      "mask_feature_relu": false'
out=$RUNS/${DATASET}_$MODEL${RUN_SUFFIX:-}
if [ "$PROBE" -gt 0 ]; then
  out=$RUNS/probe_${DATASET}_$MODEL; rm -rf "$out"; common+=(--max-iters-per-epoch "$PROBE" --epochs 1)
else
  common+=(--val-coco "$SPLIT/val.json")
fi
case "$MODEL" in
  mask_rcnn) exec $RSSEG train "${common[@]}" --arch mask_rcnn "${LITE0[@]}" --out "$out" --config "{$RCNN}" ;;
  hq_isnet) exec $RSSEG train "${common[@]}" --arch hq_isnet "${LITE0[@]}" --out "$out" \
              --config "{$RCNN, \"neck\": \"hrfpn\", \"mask_flow\": \"isnetv2\"}" ;;
  hq_isnet_v1) exec $RSSEG train "${common[@]}" --arch hq_isnet "${LITE0[@]}" --out "$out" \
                 --config "{$RCNN, \"neck\": \"hrfpn\", \"mask_flow\": \"isnetv1\"}" ;;
  hq_isnet_fpn) exec $RSSEG train "${common[@]}" --arch hq_isnet "${LITE0[@]}" --out "$out" \
                  --config "{$RCNN, \"neck\": \"fpn\", \"mask_flow\": \"isnetv2\"}" ;;
  cascade) exec $RSSEG train "${common[@]}" --arch cascade_mask_rcnn "${LITE0[@]}" --out "$out" --config "{$RCNN}" ;;
  hq_isnet_hrnet) exec $RSSEG train "${common[@]}" --arch hq_isnet --backbone hrnet_w18 --out "$out" \
                    --config "{$(echo "$RCNN" | sed 's/"frozen_blocks": [0-9]*, //'), \"neck\": \"hrfpn\", \"mask_flow\": \"isnetv2\"}" ;;
  solov2) exec $RSSEG train "${common[@]}" --arch solov2 "${LITE0[@]}" --out "$out" --config "{$SOLO}" ;;
  solov2_dcn) exec $RSSEG train "${common[@]}" --arch solov2 "${LITE0[@]}" --out "$out" \
                --config "{$SOLO, \"dcn\": \"kernel\"}" ;;
  facenet) exec $RSSEG train "${common[@]}" --arch facenet "${LITE0[@]}" --out "$out" --config "{$SOLO}" ;;
  facenet_nodcn) exec $RSSEG train "${common[@]}" --arch facenet "${LITE0[@]}" --out "$out" \
                   --config "{$SOLO, \"dcn\": \"none\"}" ;;
  *) echo "unknown model '$MODEL'; see the usage line at the top of $0" >&2; exit 2 ;;
esac
