"""Cascade RoI heads (Cai & Vasconcelos) with ISNetV1 or ISNetV2 mask branches (HQ-ISNet).

Stage t (t = 0..T-1, T = 3 by default) matches its RoIs to the ground truth at IoU threshold
`iou_thresholds[t]` (0.5/0.6/0.7), samples `batch_size_per_image` RoIs (`positive_fraction`
positive, ground-truth boxes added as RoIs), and predicts K+1 class logits and one class-agnostic
box delta encoded with `box_weights[t]` ((10,10,5,5), (20,20,10,10), (30,30,15,15)). The refined
boxes of the sampled RoIs (ground-truth ones removed, gradients stopped) are stage t+1's RoIs.
Box and mask losses of stage t are multiplied by `loss_weights[t]` (1, 0.5, 0.25).

Mask branches (`mask_flow`):
- "isnetv1": one independent mask head per stage (Cascade Mask R-CNN);
- "isnetv2": mask information flow. Head t > 0 has a bridge (1x1 conv + ReLU) that maps head t-1's
  features before its deconvolution to the RoI-feature width and adds them to head t's RoI
  features. In training, heads 0..t-1 are re-run on stage t's positive RoIs, so stage t's mask loss
  reaches the earlier heads through the bridges (as HTC does; the paper's Fig. 5b/6).

Inference: the class probabilities (softmax) of all stages are averaged, the boxes are the last
stage's refinement, then per class: score >= `score_thresh`, NMS at `nms_thresh`, at most
`detections_per_img`. All mask heads run (chained for ISNetV2) on the final boxes and the sigmoid
probabilities of the predicted class are averaged: masks [N, 1, 28, 28], pasted into the image by
GeneralizedRCNNTransform.postprocess. Choices beyond the paper: averaged probabilities (mmdetection
averages logits), torchvision's smooth-L1 (beta 1/9, summed over positives / sampled RoIs).
"""
from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import maskrcnn_loss
from torchvision.ops import MultiScaleRoIAlign, batched_nms, box_iou, clip_boxes_to_image, remove_small_boxes, roi_align
from torchvision.ops.poolers import _setup_scales

from engine.models.layers.norm import make_norm

MaskFlow = Literal["isnetv1", "isnetv2"]
MASK_FLOWS = get_args(MaskFlow)


class AlignedMultiScaleRoIAlign(MultiScaleRoIAlign):
    """torchvision's MultiScaleRoIAlign (same level mapping, k = floor(4 + log2(sqrt(wh) / 224)) clamped
    to P2..P5) with `aligned=True` (half-pixel correction) as in the paper's mmdetection:
    features {name: [B,C,H_l,W_l]}, boxes list of [N_i, 4] image pixels -> [sum N_i, C, S, S]."""

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        features = [x[name] for name in self.featmap_names]
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = _setup_scales(features, image_shapes, self.canonical_scale,
                                                         self.canonical_level)
        rois = torch.cat([torch.cat([b.new_full((len(b), 1), float(i)), b], dim=1) for i, b in enumerate(boxes)])
        levels = self.map_levels(boxes)
        pooled = features[0].new_zeros((len(rois), features[0].shape[1], *self.output_size))
        for level, (feature, scale) in enumerate(zip(features, self.scales)):
            index = torch.where(levels == level)[0]
            pooled[index] = roi_align(feature, rois[index].to(feature.dtype), self.output_size, scale,
                                      self.sampling_ratio, aligned=True).to(pooled.dtype)
        return pooled


class CascadeBoxPredictor(nn.Module):
    """Box-head features [R, rep] -> class logits [R, K+1] and class-agnostic box deltas [R, 4]."""

    def __init__(self, representation_size: int, num_outputs: int) -> None:
        super().__init__()
        self.cls_score = nn.Linear(representation_size, num_outputs)
        self.bbox_pred = nn.Linear(representation_size, 4)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.cls_score(x), self.bbox_pred(x)


class CascadeMaskHead(nn.Module):
    """RoI features [R,C,14,14] (+ previous head's features [R,M,14,14] through the bridge)
    -> (mask logits [R,K+1,28,28], features before the deconvolution [R,M,14,14])."""

    def __init__(self, in_channels: int, channels: int, layers: int, num_outputs: int, bridge: bool) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"mask_head_layers must be >= 1, got {layers}")
        self.bridge = (nn.Sequential(nn.Conv2d(channels, in_channels, 1), nn.ReLU(inplace=True))
                       if bridge else None)
        self.convs = MaskRCNNHeads(in_channels, [channels] * layers, 1, norm_layer=lambda c: make_norm("gn", c))
        self.predictor = MaskRCNNPredictor(channels, channels, num_outputs)

    def forward(self, roi_features: Tensor, previous: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = roi_features
        if self.bridge is not None and previous is not None:
            x = x + self.bridge(previous)
        features = self.convs(x)
        return self.predictor(features), features


def cascade_box_loss(class_logits: Tensor, box_deltas: Tensor, labels: Tensor,
                     regression_targets: Tensor) -> tuple[Tensor, Tensor]:
    """Cross-entropy over [R, K+1] logits with labels [R] (0 = background), and smooth-L1 of the
    class-agnostic deltas [R, 4] of the positives against targets [R, 4], divided by R.
    Both are 0 (with gradients attached) when there are no RoIs."""
    if labels.numel() == 0:
        zero = class_logits.sum() * 0 + box_deltas.sum() * 0
        return zero, zero
    classification = F.cross_entropy(class_logits.float(), labels)
    positive = labels > 0
    box = F.smooth_l1_loss(box_deltas.float()[positive], regression_targets[positive], beta=1 / 9,
                           reduction="sum") / labels.numel()
    return classification, box


def postprocess_detections(class_probs: Tensor, boxes: Tensor, score_thresh: float, nms_thresh: float,
                           detections_per_img: int) -> tuple[Tensor, Tensor, Tensor]:
    """One image: probabilities [N, K+1] (column 0 background) and class-agnostic boxes [N, 4] ->
    boxes [D, 4], scores [D], labels [D] int64 in 1..K, sorted by decreasing score, after a score
    threshold (>=), removal of boxes under 0.01 px and NMS per class."""
    n, num_classes = class_probs.shape[0], class_probs.shape[1] - 1
    labels = torch.arange(1, num_classes + 1, device=boxes.device).expand(n, num_classes).reshape(-1)
    scores = class_probs[:, 1:].reshape(-1)
    candidates = boxes[:, None].expand(n, num_classes, 4).reshape(-1, 4)
    keep = torch.where(scores >= score_thresh)[0]
    candidates, scores, labels = candidates[keep], scores[keep], labels[keep]
    keep = remove_small_boxes(candidates, min_size=1e-2)
    candidates, scores, labels = candidates[keep], scores[keep], labels[keep]
    keep = batched_nms(candidates, scores, labels, nms_thresh)[:detections_per_img]
    return candidates[keep], scores[keep], labels[keep]


class CascadeRoIHeads(nn.Module):
    """RoI part of Cascade Mask R-CNN / HQ-ISNet (see the module docstring).

    forward(features {name: [B,C,H_l,W_l]}, proposals list of [P_i, 4], image_shapes, targets)
    -> (detections, losses): training gives ([], {"loss_classifier_s1", "loss_box_reg_s1",
    "loss_mask_s1", ..._s2, ..._s3}); eval gives ([{"boxes", "labels", "scores", "masks" [N,1,28,28]}], {}).
    """

    def __init__(self, box_roi_pool: nn.Module, mask_roi_pool: nn.Module, box_heads: list[nn.Module],
                 box_predictors: list[CascadeBoxPredictor], mask_heads: list[CascadeMaskHead],
                 iou_thresholds: list[float], box_weights: list[list[float]], loss_weights: list[float],
                 mask_flow: str = "isnetv2", batch_size_per_image: int = 512, positive_fraction: float = 0.25,
                 score_thresh: float = 0.05, nms_thresh: float = 0.5, detections_per_img: int = 100) -> None:
        super().__init__()
        stages = len(iou_thresholds)
        if not (len(box_heads) == len(box_predictors) == len(mask_heads) == len(box_weights) == len(loss_weights)
                == stages) or stages < 1:
            raise ValueError("cascade stages disagree: give as many IoU thresholds, box weights, loss weights, "
                             f"box heads and mask heads ({stages}, {len(box_weights)}, {len(loss_weights)}, "
                             f"{len(box_heads)}, {len(mask_heads)})")
        if mask_flow not in MASK_FLOWS:
            raise ValueError(f"unknown mask_flow '{mask_flow}'; choose one of {', '.join(MASK_FLOWS)}")
        self.box_roi_pool, self.mask_roi_pool = box_roi_pool, mask_roi_pool
        self.box_heads = nn.ModuleList(box_heads)
        self.box_predictors = nn.ModuleList(box_predictors)
        self.mask_heads = nn.ModuleList(mask_heads)
        self.matchers = [det_utils.Matcher(t, t, allow_low_quality_matches=False) for t in iou_thresholds]
        self.box_coders = [det_utils.BoxCoder(tuple(float(v) for v in w)) for w in box_weights]
        self.loss_weights = [float(w) for w in loss_weights]
        self.sampler = det_utils.BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self.mask_flow = mask_flow
        self.score_thresh, self.nms_thresh, self.detections_per_img = score_thresh, nms_thresh, detections_per_img

    @property
    def num_stages(self) -> int:
        return len(self.box_heads)

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes: list[tuple[int, int]],
                targets: list[dict[str, Tensor]] | None = None) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        if self.training:
            if targets is None:
                raise ValueError("targets are needed in training mode")
            return [], self._losses(features, proposals, image_shapes, targets)
        return self._detect(features, proposals, image_shapes), {}

    # ------------------------------------------------------------------------------------- shared parts

    def box_forward(self, stage: int, features: dict[str, Tensor], rois: list[Tensor],
                    image_shapes: list[tuple[int, int]]) -> tuple[Tensor, Tensor]:
        """Stage `stage` on RoIs (list of [R_i, 4]) -> class logits [R, K+1], box deltas [R, 4]."""
        pooled = self.box_roi_pool(features, rois, image_shapes)
        return self.box_predictors[stage](self.box_heads[stage](pooled))

    def mask_forward(self, roi_features: Tensor, last_stage: int) -> tuple[list[Tensor], list[Tensor]]:
        """Mask heads 0..last_stage on RoI features [R,C,14,14], chained through the bridges for
        ISNetV2 -> (logits [R,K+1,28,28] per stage, features [R,M,14,14] per stage)."""
        logits, features = [], []
        previous = None
        for head in self.mask_heads[:last_stage + 1]:
            stage_logits, previous = head(roi_features, previous if self.mask_flow == "isnetv2" else None)
            logits.append(stage_logits)
            features.append(previous)
        return logits, features

    def _refine(self, stage: int, deltas: Tensor, rois: list[Tensor],
                image_shapes: list[tuple[int, int]]) -> list[Tensor]:
        """Decode the stage's deltas [R, 4] on its RoIs (list of [R_i, 4]) -> clipped boxes per image."""
        per_image = deltas.detach().float().split([len(r) for r in rois])
        return [clip_boxes_to_image(self.box_coders[stage].decode_single(d, r), shape)
                for d, r, shape in zip(per_image, rois, image_shapes)]

    # ------------------------------------------------------------------------------------------ training

    def _sample(self, stage: int, proposals: list[Tensor], gt_boxes: list[Tensor],
                gt_labels: list[Tensor]) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
        """Proposals + ground truth, matched at the stage's IoU threshold and sampled -> per image
        RoIs [R_i, 4], matched ground-truth index [R_i], labels [R_i] (0 = background), is-ground-truth [R_i]."""
        all_rois, all_matched, all_labels, all_is_gt = [], [], [], []
        for boxes, gt, labels in zip(proposals, gt_boxes, gt_labels):
            rois = torch.cat([boxes, gt])
            is_gt = torch.cat([torch.zeros(len(boxes), dtype=torch.bool, device=rois.device),
                               torch.ones(len(gt), dtype=torch.bool, device=rois.device)])
            if len(gt) == 0:
                matched = torch.zeros(len(rois), dtype=torch.int64, device=rois.device)
                roi_labels = torch.zeros(len(rois), dtype=torch.int64, device=rois.device)
            else:
                matches = self.matchers[stage](box_iou(gt, rois))
                matched = matches.clamp(min=0)
                roi_labels = labels[matched].clone()
                roi_labels[matches < 0] = 0
            all_rois.append(rois)
            all_matched.append(matched)
            all_labels.append(roi_labels)
            all_is_gt.append(is_gt)
        positives, negatives = self.sampler(all_labels)
        keeps = [torch.where(p | n)[0] for p, n in zip(positives, negatives)]
        return ([x[k] for x, k in zip(all_rois, keeps)], [x[k] for x, k in zip(all_matched, keeps)],
                [x[k] for x, k in zip(all_labels, keeps)], [x[k] for x, k in zip(all_is_gt, keeps)])

    def _losses(self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes: list[tuple[int, int]],
                targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        gt_boxes = [t["boxes"] for t in targets]
        gt_labels = [t["labels"] for t in targets]
        gt_masks = [t["masks"] for t in targets]
        losses: dict[str, Tensor] = {}
        rois = [p.detach() for p in proposals]
        for stage in range(self.num_stages):
            weight, name = self.loss_weights[stage], f"_s{stage + 1}"
            rois, matched, labels, is_gt = self._sample(stage, rois, gt_boxes, gt_labels)
            class_logits, deltas = self.box_forward(stage, features, rois, image_shapes)
            targets_per_image = [self.box_coders[stage].encode_single(gt[m], r) if len(gt) else torch.zeros_like(r)
                                 for gt, m, r in zip(gt_boxes, matched, rois)]
            classification, box = cascade_box_loss(class_logits, deltas, torch.cat(labels),
                                                   torch.cat(targets_per_image))
            losses["loss_classifier" + name] = weight * classification
            losses["loss_box_reg" + name] = weight * box
            losses["loss_mask" + name] = weight * self._mask_loss(stage, features, rois, matched, labels, gt_masks,
                                                                  gt_labels, image_shapes)
            if stage + 1 < self.num_stages:
                rois = [boxes[~gt] for boxes, gt in zip(self._refine(stage, deltas, rois, image_shapes), is_gt)]
        return losses

    def _mask_loss(self, stage: int, features: dict[str, Tensor], rois: list[Tensor], matched: list[Tensor],
                   labels: list[Tensor], gt_masks: list[Tensor], gt_labels: list[Tensor],
                   image_shapes: list[tuple[int, int]]) -> Tensor:
        """BCE of the stage's mask logits on its positive RoIs against the matched ground-truth masks."""
        positive = [lab > 0 for lab in labels]
        positive_rois = [r[p] for r, p in zip(rois, positive)]
        positive_matched = [m[p] for m, p in zip(matched, positive)]
        roi_features = self.mask_roi_pool(features, positive_rois, image_shapes)
        if self.mask_flow == "isnetv2":
            logits = self.mask_forward(roi_features, stage)[0][-1]
        else:
            logits = self.mask_heads[stage](roi_features)[0]
        return maskrcnn_loss(logits, positive_rois, gt_masks, gt_labels, positive_matched)

    # ----------------------------------------------------------------------------------------- inference

    def _detect(self, features: dict[str, Tensor], proposals: list[Tensor],
                image_shapes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        rois = proposals
        stage_probs = []
        for stage in range(self.num_stages):
            class_logits, deltas = self.box_forward(stage, features, rois, image_shapes)
            stage_probs.append(F.softmax(class_logits.float(), dim=-1))
            rois_before, rois = rois, self._refine(stage, deltas, rois, image_shapes)
        probs = torch.stack(stage_probs).mean(0).split([len(r) for r in rois_before])
        detections = []
        for image_probs, boxes in zip(probs, rois):
            boxes, scores, labels = postprocess_detections(image_probs, boxes, self.score_thresh, self.nms_thresh,
                                                           self.detections_per_img)
            detections.append({"boxes": boxes, "labels": labels, "scores": scores})
        roi_features = self.mask_roi_pool(features, [d["boxes"] for d in detections], image_shapes)
        stage_logits = self.mask_forward(roi_features, self.num_stages - 1)[0]
        labels = torch.cat([d["labels"] for d in detections])
        index = torch.arange(len(labels), device=labels.device)
        masks = torch.stack([logits[index, labels].float().sigmoid() for logits in stage_logits]).mean(0)
        for detection, image_masks in zip(detections, masks[:, None].split([len(d["labels"]) for d in detections])):
            detection["masks"] = image_masks
        return detections
