"""Small building blocks shared by several models: norms, conv + norm + activation, DCNv2, the padding-only
batching of detectors."""
