"""Heads on a feature pyramid: the RPN (heads.rpn) and the cascade RoI heads of HQ-ISNet (heads.cascade).
SOLOv2's kernel/category and mask-feature heads live with their targets and losses in engine.models.solo."""
