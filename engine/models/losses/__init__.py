"""Losses as plain functions of logits and targets (testable without a model): FarSeg's foreground-aware
loss (losses.fa_loss) and Hi-ResNet's generalised Dice / label-smoothing CE / edge-aware losses
(losses.hi_resnet). SOLOv2's and the cascade's live beside their heads (engine.models.solo, heads.cascade)."""
