"""Region proposal network of the R-CNN detectors (torchvision's), one anchor size per pyramid level P2..P6."""
from __future__ import annotations

from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead


def region_proposal_network(channels: int, anchor_sizes: tuple[int, ...], aspect_ratios: tuple[float, ...],
                            pre_nms_top_n: tuple[int, int], post_nms_top_n: tuple[int, int]) -> RegionProposalNetwork:
    """RPN on `channels`-wide levels: anchors of `anchor_sizes[l]` pixels at every `aspect_ratios` on level l;
    IoU 0.7 / 0.3 matching, 256 anchors sampled per image (half positive), NMS 0.7 (Mask R-CNN's settings).

    `pre_nms_top_n` / `post_nms_top_n`: proposals kept per level before NMS / per image after it, as
    (training, testing).
    """
    anchors = AnchorGenerator(sizes=tuple((int(s),) for s in anchor_sizes),
                              aspect_ratios=(tuple(float(r) for r in aspect_ratios),) * len(anchor_sizes))
    return RegionProposalNetwork(
        anchors, RPNHead(channels, anchors.num_anchors_per_location()[0]),
        fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=256, positive_fraction=0.5,
        pre_nms_top_n={"training": pre_nms_top_n[0], "testing": pre_nms_top_n[1]},
        post_nms_top_n={"training": post_nms_top_n[0], "testing": post_nms_top_n[1]},
        nms_thresh=0.7,
    )
