"""Raster access over rasterio."""
