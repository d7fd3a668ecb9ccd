"""Masks and class-component strips (engine.vector.components) to polygons, areas in square metres, and a
streaming atomic vector writer."""

from engine.vector.polygons import geometry_area_m2, mask_to_geometry, pixel_area_m2
from engine.vector.writer import FIELDS, VectorWriter, driver_for_path

__all__ = [
    "FIELDS", "VectorWriter", "driver_for_path", "geometry_area_m2", "mask_to_geometry", "pixel_area_m2",
]
