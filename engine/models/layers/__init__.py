"""Small building blocks shared by several models (conv + norm + activation, DCNv2)."""
