"""Object-level scoring of a polygon layer against a reference layer: precision, recall, F1, per class.

Matching (as COCO's, one IoU): predictions in descending score order each take the unmatched reference
polygon of the same class with the highest IoU, if that IoU >= `iou`. A matched pair is a hit (TP); an
unmatched prediction a false alarm (FP); an unmatched reference polygon a miss (FN). The prediction layer
is reprojected to the reference's CRS when they differ. Layers without the class field score as one class.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from shapely.strtree import STRtree

from engine.errors import UserError
from engine.evaluation.operating_point import THRESHOLDS, operating_points

ALL = "all"  # the overall row


@dataclass(frozen=True)
class Polygons:
    """A vector layer read for scoring: geometries (in `crs`), their class names and scores."""

    geometries: list[BaseGeometry]
    classes: list[str]
    scores: list[float]
    crs: str | None
    fids: list[int] = field(default_factory=list)  # each geometry's feature id in the file


@dataclass(frozen=True)
class Counts:
    """Hits, false alarms and misses of one class (or all) -> precision, recall, F1 (None when undefined)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.tp + self.fp + self.fn else None

    def as_dict(self) -> dict[str, Any]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn,
                **{k: (round(v, 4) if v is not None else None)
                   for k, v in (("precision", self.precision), ("recall", self.recall), ("f1", self.f1))}}


@dataclass(frozen=True)
class Score:
    """Per-class and overall counts, and which features matched (indices into each layer)."""

    iou: float
    by_class: dict[str, Counts]  # includes ALL
    matches: list[tuple[int, int, float]] = field(default_factory=list)  # (prediction, reference, IoU)
    false_alarms: list[int] = field(default_factory=list)  # prediction indices
    misses: list[int] = field(default_factory=list)  # reference indices

    def to_dict(self) -> dict[str, Any]:
        return {"iou": self.iou, "overall": self.by_class[ALL].as_dict(),
                "per_class": {k: v.as_dict() for k, v in self.by_class.items() if k != ALL}}


def read_polygons(path: str | Path, class_field: str = "class_name", score_field: str = "score",
                  layer: str | None = None, to_crs: str | None = None) -> Polygons:
    """Any polygon layer GDAL reads -> Polygons (reprojected to `to_crs` when given and different)."""
    import fiona
    from fiona.errors import DriverError
    from rasterio.crs import CRS
    from rasterio.warp import transform_geom

    try:
        with fiona.open(str(path), layer=layer) as src:
            crs = src.crs.to_wkt() if src.crs else None
            records = list(src)
    except (DriverError, OSError, ValueError) as exc:
        raise UserError(f"vector layer '{path}': cannot be read ({str(exc).splitlines()[0]}); "
                        "give a GeoPackage, Shapefile or GeoJSON of polygons") from None
    reproject = bool(to_crs and crs and CRS.from_user_input(to_crs) != CRS.from_user_input(crs))
    geometries, classes, scores, fids = [], [], [], []
    for n, rec in enumerate(records):
        if rec.geometry is None:
            continue
        geom = dict(rec.geometry)
        if reproject:
            geom = transform_geom(crs, to_crs, geom)
        g = shape(geom)
        if g.is_empty or g.area <= 0:
            continue
        if not g.is_valid:
            g = g.buffer(0)
        props = dict(rec.properties)
        geometries.append(g)
        fids.append(int(rec.id) if str(rec.id).lstrip("-").isdigit() else n)
        classes.append(str(props.get(class_field, "")) if class_field in props else "")
        value = props.get(score_field)
        scores.append(float(value) if isinstance(value, (int, float)) and math.isfinite(value) else 1.0)
    return Polygons(geometries, classes, scores, to_crs if reproject else crs, fids)


def match_polygons(predictions: Polygons, reference: Polygons, iou: float = 0.5) -> Score:
    """One-to-one matching at IoU >= `iou`, predictions by descending score (ties keep file order)."""
    if not 0.0 < iou <= 1.0:
        raise UserError(f"--iou {iou}: give a value in (0, 1], e.g. --iou 0.5")
    one_class = not any(predictions.classes) or not any(reference.classes)
    pred_cls = [""] * len(predictions.classes) if one_class else predictions.classes
    ref_cls = [""] * len(reference.classes) if one_class else reference.classes
    tree = STRtree(reference.geometries) if reference.geometries else None
    taken = np.zeros(len(reference.geometries), bool)
    matches: list[tuple[int, int, float]] = []
    false_alarms: list[int] = []
    order = sorted(range(len(predictions.geometries)), key=lambda i: -predictions.scores[i])
    for i in order:
        g = predictions.geometries[i]
        best, best_iou = -1, iou
        candidates = tree.query(g) if tree is not None else []
        for j in candidates:
            j = int(j)
            if taken[j] or ref_cls[j] != pred_cls[i]:
                continue
            r = reference.geometries[j]
            inter = g.intersection(r).area
            union = g.area + r.area - inter
            value = inter / union if union > 0 else 0.0
            if value >= best_iou:
                best, best_iou = j, value
        if best >= 0:
            taken[best] = True
            matches.append((i, best, round(best_iou, 4)))
        else:
            false_alarms.append(i)
    misses = [j for j in range(len(reference.geometries)) if not taken[j]]
    names = sorted(set(pred_cls) | set(ref_cls))
    by_class = {ALL: Counts(len(matches), len(false_alarms), len(misses))}
    if not one_class:
        for name in names:
            by_class[name] = Counts(sum(pred_cls[i] == name for i, _, _ in matches),
                                    sum(pred_cls[i] == name for i in false_alarms),
                                    sum(ref_cls[j] == name for j in misses))
    return Score(iou, by_class, matches, false_alarms, misses)


def score_layers(prediction: str | Path, reference: str | Path, iou: float = 0.5, class_field: str = "class_name",
                 score_field: str = "score", prediction_layer: str | None = None, reference_layer: str | None = None,
                 reference_class_field: str | None = None, min_score: float = 0.0) -> tuple[Score, Polygons, Polygons]:
    """(score, prediction layer, reference layer): both read, the prediction reprojected to the reference's CRS
    and cut to the polygons scoring >= `min_score`. `reference_class_field`: the reference's class attribute when
    it is not `class_field`."""
    ref = read_polygons(reference, reference_class_field or class_field, score_field, reference_layer)
    pred = above(read_polygons(prediction, class_field, score_field, prediction_layer, to_crs=ref.crs), min_score)
    return match_polygons(pred, ref, iou), pred, ref


def score_files(prediction: str | Path, reference: str | Path, iou: float = 0.5, class_field: str = "class_name",
                score_field: str = "score", prediction_layer: str | None = None,
                reference_layer: str | None = None, reference_class_field: str | None = None) -> Score:
    """Read both layers (the prediction reprojected to the reference's CRS) and match them."""
    return score_layers(prediction, reference, iou, class_field, score_field, prediction_layer, reference_layer,
                        reference_class_field)[0]


SWEEP_THRESHOLDS = THRESHOLDS  # 0.05, 0.10, ..., 0.95: those of `rsseg evaluate`'s object F1 curve


def above(polygons: Polygons, min_score: float) -> Polygons:
    """The polygons scoring >= `min_score` (their feature ids kept)."""
    keep = [i for i, s in enumerate(polygons.scores) if s >= min_score]
    return Polygons([polygons.geometries[i] for i in keep], [polygons.classes[i] for i in keep],
                    [polygons.scores[i] for i in keep], polygons.crs,
                    [polygons.fids[i] for i in keep] if polygons.fids else [])


def sweep(predictions: Polygons, reference: Polygons, iou: float = 0.5,
          thresholds: tuple[float, ...] = SWEEP_THRESHOLDS) -> list[tuple[float, Counts]]:
    """Overall counts of the predictions scoring >= each threshold: which score threshold suits this area.
    Only thresholds at or above the lowest prediction score say something (below it nothing changes).

    One matching serves every threshold: predictions are matched in descending score order, so dropping those
    under a threshold leaves the matches of the others as they were."""
    matched = {i for i, _, _ in match_polygons(predictions, reference, iou).matches}
    points = operating_points(predictions.scores, [i in matched for i in range(len(predictions.scores))],
                              len(reference.geometries), thresholds)
    return [(p.threshold, Counts(p.true_positives, p.false_positives, p.false_negatives)) for p in points]


def best_of_sweep(rows: list[tuple[float, Counts]]) -> tuple[float, Counts]:
    """The (threshold, counts) of the highest F1; the lowest threshold among equals."""
    return max(rows, key=lambda row: (row[1].f1 or 0.0, -row[0]))


def format_sweep(rows: list[tuple[float, Counts]], lowest_score: float | None = None) -> str:
    """A text table: score >=, TP, FP, FN, precision, recall, F1; the best F1 marked."""
    best = best_of_sweep(rows)[0] if rows else None
    lines = [f"{'score >=':>10}{'TP':>6}{'FP':>6}{'FN':>6}{'precision':>10}{'recall':>10}{'F1':>10}"]
    for t, c in rows:
        cells = "".join(f"{v:>10.3f}" if v is not None else f"{'n/a':>10}" for v in (c.precision, c.recall, c.f1))
        lines.append(f"{t:>10.2f}{c.tp:>6}{c.fp:>6}{c.fn:>6}{cells}" + ("  <- best F1" if t == best else ""))
    if lowest_score is not None and rows and lowest_score > rows[0][0]:
        lines.append(f"(the lowest prediction score is {lowest_score:.2f}: segment with a lower --score-threshold "
                     "to see the rows below it)")
    return "\n".join(lines)


UNMATCHED_FIELDS = (("class_name", "str"), ("score", "float"), ("best_iou", "float"), ("source_fid", "int"))


def _best_iou(g: BaseGeometry, name: str, other: Polygons, tree: STRtree | None, one_class: bool) -> float:
    """The highest IoU of `g` with a polygon of `other` of the same class (any class when scored as one)."""
    best = 0.0
    for j in (tree.query(g) if tree is not None else []):
        r = other.geometries[int(j)]
        if not one_class and other.classes[int(j)] != name:
            continue
        inter = g.intersection(r).area
        union = g.area + r.area - inter
        best = max(best, inter / union if union > 0 else 0.0)
    return round(best, 4)


def write_unmatched(path: str | Path, layer: Polygons, indices: list[int], other: Polygons, score: Score,
                    flag: str = "--misses") -> Path:
    """Write the polygons `indices` of `layer` (misses of the reference, or false alarms of the prediction) to
    `path` (.gpkg, .shp, .geojson) in `layer`'s CRS, with class_name, score (predictions only), best_iou (the
    highest IoU with a polygon of `other` of the same class, below the bar) and source_fid (the feature id in
    the input file). Written atomically; UserError naming `flag` when `path` cannot be written."""
    from rasterio.crs import CRS

    from engine.vector.writer import VectorWriter

    one_class = set(score.by_class) == {ALL}
    tree = STRtree(other.geometries) if other.geometries else None
    is_prediction = flag != "--misses"
    try:
        writer = VectorWriter(path, CRS.from_user_input(layer.crs).to_wkt() if layer.crs else None,
                              Path(path).stem, UNMATCHED_FIELDS)
    except (ValueError, PermissionError) as exc:
        raise UserError(f"{flag} {path}: {str(exc).split(': ', 1)[-1]}") from None
    with writer:
        for i in indices:
            g = layer.geometries[i]
            writer.write(g, {"class_name": layer.classes[i], "score": layer.scores[i] if is_prediction else None,
                             "best_iou": _best_iou(g, layer.classes[i], other, tree, one_class),
                             "source_fid": layer.fids[i] if layer.fids else i})
    return Path(path)


def format_score(score: Score) -> str:
    """A text table: class, TP, FP, FN, precision, recall, F1."""
    def cell(v: float | None) -> str:
        return f"{v:>10.3f}" if v is not None else f"{'n/a':>10}"

    names = [n for n in score.by_class if n != ALL] + [ALL]
    width = max(8, *(len(n) for n in names)) + 2
    lines = [f"{'class':{width}}{'TP':>6}{'FP':>6}{'FN':>6}{'precision':>10}{'recall':>10}{'F1':>10}"]
    for name in names:
        c = score.by_class[name]
        lines.append(f"{name:{width}}{c.tp:>6}{c.fp:>6}{c.fn:>6}{cell(c.precision)}{cell(c.recall)}{cell(c.f1)}")
    lines.append(f"one-to-one matching at IoU >= {score.iou:g}")
    return "\n".join(lines)


__all__ = ["Counts", "Polygons", "Score", "above", "best_of_sweep", "format_score", "format_sweep",
           "match_polygons", "read_polygons", "score_files", "score_layers", "sweep", "write_unmatched"]
