"""Tiled inference: raster -> tiles -> model -> merged instances -> polygons."""
