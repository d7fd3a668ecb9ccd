"""SOLOv2 parts: heads, target assignment, losses, point NMS + Matrix NMS, post-processing."""
