"""Semantic segmentation models (contract: engine.tasks.semantic): Semantic FPN, FarSeg, Hi-ResNet and C2FNet.
engine.models.MODELS imports their builders directly."""
