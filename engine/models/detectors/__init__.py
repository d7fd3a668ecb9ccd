"""Instance detectors composed from parts: Mask R-CNN, Cascade Mask R-CNN / HQ-ISNet, SOLOv2 / FACENet."""
