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
    "AOI": "Keep only the objects inside these polygons (any CRS), e.g. a harbour: an object counts as inside when "
           "its representative point (a point always inside the object) is. Tiles off the polygons are not run; "
           "without an extent only their bounding box is segmented.",
    "EXCLUDE": "Drop the objects inside these polygons (any CRS), e.g. land when looking for ships at sea: an object "
               "whose representative point lies inside is dropped. Tiles wholly inside are not run.",
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
           "AOI": "Area of interest", "EXCLUDE": "Exclude areas", "BANDS": "Bands",
           "SCORE_THRESHOLD": "Score threshold", "TILE_SIZE": "Tile size",
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


TRAIN_PARAMETER_HELP = {
    "INPUT": "The raster the polygons were drawn on: a local raster file (save web or virtual layers as GeoTIFF "
             "first).",
    "POLYGONS": "Polygons of the objects to learn, e.g. ships you outlined (any CRS; reprojected to the raster's). "
                "Every object of interest in the chosen area should be outlined: what is not outlined is learnt as "
                "background.",
    "CLASS_FIELD": "The attribute holding each polygon's class. Empty: one class (the base model's, when it has "
                   "one). Classes the base model does not know give the model a new head, trained from scratch.",
    "EXTENT": "Use only the chips (image tiles) over this rectangle. Empty: the whole raster.",
    "AOI": "Use only the chips touching these polygons (instead of an extent).",
    "BASE_MODEL": "The shipped or trained model to start from; the new model keeps its architecture, bands, "
                  "normalisation and pixel size.",
    "BASE_CHECKPOINT": "A model file (.pt) to start from instead of Base model.",
    "BANDS": "The raster bands fed to the model, in the model's band order (e.g. 1,1,1 for a 1-band raster and an "
             "RGB model). Empty: the raster's bands, when their count is the model's.",
    "EPOCHS": "Passes over the training chips. On a CPU an epoch of 50 chips of 512 px takes a few minutes.",
    "TILE_SIZE": "The size of the image chips cut around the polygons, in pixels.",
    "VALIDATION_FRACTION": "The fraction of the chips kept aside to measure the new model (its validation AP). "
                           "0: no validation.",
    "DEVICE": "auto uses a CUDA GPU when the engine sees one, else the CPU.",
    "OUTPUT": "The new model file (.pt). It then appears in the dock's model list and in Segment raster layer.",
}

TRAIN_HELP = (
    "Fine-tunes a segmentation model on polygons you drew over a raster: the engine cuts image chips around "
    "them, trains the base model on the chips, and reports the validation AP in the log. A model trained "
    "from a few polygons is a demonstration of what your data can teach, not a validated product."
)

SCORE_PARAMETER_HELP = {
    "PREDICTION": "The polygons to score, e.g. a segmentation result.",
    "REFERENCE": "The reference (truth) polygons, e.g. drawn by an analyst.",
    "IOU": "Intersection over union a prediction needs with a reference polygon of its class to count as a hit. "
           "Matching is one-to-one, highest scores first.",
    "CLASS_FIELD": "The prediction's class attribute (class_name for segmentation results). When it is missing, "
                   "everything scores as one class.",
    "REFERENCE_CLASS_FIELD": "The reference layer's class attribute (default: the same name as the prediction's).",
    "OUTPUT": "A table of hits (TP), false alarms (FP), misses (FN), precision, recall and F1 per class and "
              "overall (class 'all').",
    "MISSES": "Optional: the reference polygons no prediction matched, to look at on the map.",
    "FALSE_ALARMS": "Optional: the predictions that matched no reference polygon, to look at on the map.",
}

SCORE_HELP = (
    "Scores a polygon layer against a reference layer: each prediction, highest score first, takes the unmatched "
    "reference polygon of its class it overlaps most, if their IoU reaches the threshold. Precision, recall "
    "and F1 go to the log and to a table; misses and false alarms can be written as layers."
)


def parameter_help(intro: str, labels: dict[str, str], texts: dict[str, str]) -> str:
    """A help panel: the algorithm's intro, then each parameter's label and text."""
    parts = [f"<p>{escape(intro)}</p>", "<h3>Parameters</h3><dl>"]
    for key, text in texts.items():
        parts.append(f"<dt><b>{escape(labels.get(key, key))}</b></dt><dd>{escape(text)}</dd>")
    return "".join(parts) + "</dl>"
