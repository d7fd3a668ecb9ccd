"""Processing provider "Remote sensing segmentation" (batch mode, Graphical Modeler, qgis_process)."""
