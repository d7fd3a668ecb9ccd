"""Tiled inference: raster -> tiles -> model -> the task's writer stage (merged predictions) -> polygons."""
