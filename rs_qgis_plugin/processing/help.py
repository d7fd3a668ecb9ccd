"""Help texts of the "Segment raster layer" algorithm: the dialog's help panel and each parameter's tooltip."""
from __future__ import annotations

from html import escape

from rs_qgis_plugin.models import ModelInfo

PARAMETER_HELP = {
    "INPUT": "The raster to segment: a file, or any raster layer (web and virtual layers are written to a "
             "temporary GeoTIFF first).",
    "MODEL": "The shipped model to run; its title says what it finds, in which kind of image (SAR or optical) "
             "and at which pixel size.",
    "CHECKPOINT": "A model file (.pt) made by `rsseg train`; when given, it is used instead of Model.",
    "EXTENT": "Segment only this rectangle (any CRS; it is transformed to the raster's). Empty: the whole raster.",
    "BANDS": "The raster bands fed to the model, in the model's band order, comma-separated: 3,2,1 feeds "
             "band 3 as red for an RGB model; a band may repeat (1,1,1 feeds a 1-band raster to an RGB model). "
             "Empty: the raster's bands as they are, when their count is the model's.",
    "SCORE_THRESHOLD": "Objects scored below this are dropped. Left at the value shown (the default model's), "
                       "each model uses its own default.",
    "TILE_SIZE": "The raster is processed in square tiles of this many pixels. Left at the value shown, each "
                 "model uses its own default.",
    "OVERLAP": "Pixels shared by neighbouring tiles, so that objects on a seam are found whole. Left at the "
               "value shown, each model uses its own default.",
    "DEVICE": "auto uses a CUDA GPU when the engine sees one, else the CPU.",
    "OUTPUT": "The polygons: a GeoPackage (.gpkg), Shapefile (.shp) or GeoJSON file, with the fields "
              "class_id, class_name, score, area_m2, n_tiles, merged, model and source.",
}

ALGORITHM_HELP = (
    "Segments a raster into polygons (ships, airplanes, buildings...) with a deep-learning model. The model "
    "runs in the rsseg engine, a separate Python with torch; choose its interpreter under Processing > "
    "Options > Providers > Remote sensing segmentation (or set RSSEG_ENGINE_PYTHON)."
)

_LABELS = {"INPUT": "Raster layer", "MODEL": "Model", "CHECKPOINT": "Checkpoint", "EXTENT": "Processing extent",
           "BANDS": "Bands", "SCORE_THRESHOLD": "Score threshold", "TILE_SIZE": "Tile size",
           "OVERLAP": "Tile overlap", "DEVICE": "Device", "OUTPUT": "Segmented polygons"}


def short_help(models: list[ModelInfo]) -> str:
    """The help panel: what the algorithm does, each parameter, and the models listed so far."""
    parts = [f"<p>{escape(ALGORITHM_HELP)}</p>", "<h3>Parameters</h3><dl>"]
    for key, text in PARAMETER_HELP.items():
        parts.append(f"<dt><b>{escape(_LABELS[key])}</b></dt><dd>{escape(text)}</dd>")
    parts.append("</dl>")
    if models:
        parts.append("<h3>Models</h3><ul>")
        for m in models:
            classes = ", ".join(str(c.get("name")) for c in m.classes)
            parts.append(f"<li><b>{escape(m.title)}</b> ({escape(m.name)}): {escape(classes)}</li>")
        parts.append("</ul>")
    return "".join(parts)
