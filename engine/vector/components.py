"""Final strips of a stitched class-probability map -> one polygon per connected class component.

Each strip (consecutive rows, full width of the tiled area) becomes a class map (argmax) whose
4-connected components of every foreground class are traced by rasterio.features.shapes (holes kept).
Components touching the strip's lower edge are held; with the next strip they are joined to the
components of the same class whose top-row pixels are 4-adjacent to theirs, and their polygons are
unioned (shapely), so a region crossing any number of strips ends as ONE polygon. Probability sums and
pixel counts are accumulated, so score = mean probability of the component's class inside it.
Geometries are in working-grid pixel coordinates (x = column, y = row, pixel edges on integers).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import rasterio.features
import shapely
from affine import Affine
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry


@dataclass
class Component:
    """A connected region of one class. `bottom_cols`: its columns on the last row of the latest strip
    (only while it may continue into the next strip). `cells`: ids of the tile cores it overlaps."""

    class_id: int
    geometry: BaseGeometry  # working-grid pixel coordinates
    prob_sum: float  # sum over its pixels of the stitched probability of class_id
    pixels: int
    cells: set[int] = field(default_factory=set)
    strips: int = 1  # strip pieces unioned into it
    bottom_cols: np.ndarray | None = None

    @property
    def score(self) -> float:
        """Mean probability of its class inside it, in [0, 1]."""
        return self.prob_sum / self.pixels

    @property
    def merged(self) -> bool:
        """Whether it was joined across strips."""
        return self.strips > 1


def class_map(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities [K+1,h,w] -> (argmax classes [h,w] uint8, probability of that class [h,w] float32)."""
    classes = np.argmax(probs, axis=0)
    chosen = np.take_along_axis(probs, classes[None], axis=0)[0]
    return classes.astype(np.uint8), chosen.astype(np.float32)


def count_components(probs: np.ndarray) -> int:
    """Number of 4-connected foreground components of one tile's argmax map [K+1,h,w] (QA counts)."""
    classes = np.argmax(probs, axis=0).astype(np.uint8)
    return sum(1 for _ in rasterio.features.shapes(classes, mask=classes > 0, connectivity=4))


def core_cells(tiles: list, area: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per row and per column of `area` (row0, col0, row1, col1): the index of the tile-core band it lies
    in -> (row_band [H] int64, col_band [W] int64); cell id = row_band * n_col_bands + col_band."""
    def bands(starts: set[int], low: int, high: int) -> np.ndarray:
        edges = np.array(sorted(starts))
        return np.searchsorted(edges, np.arange(low, high), side="right") - 1
    row_band = bands({t.core[0] for t in tiles}, area[0], area[2])
    col_band = bands({t.core[1] for t in tiles}, area[1], area[3])
    return row_band, col_band


class StripVectoriser:
    """`add_strip(row0, classes, scores)` per final strip, top to bottom -> the Components that are complete.

    `col0`: first column of the strips; `row_band`/`col_band`: core band per row/column of the area
    (see `core_cells`; the row index is the row minus `row0_area`); components of fewer than `min_area`
    pixels are dropped when complete.
    """

    def __init__(self, col0: int, row0_area: int, row_band: np.ndarray, col_band: np.ndarray,
                 min_area: int = 0) -> None:
        self.col0, self.row0_area = col0, row0_area
        self.row_band, self.col_band = row_band, col_band
        self.n_col_bands = int(col_band.max()) + 1 if col_band.size else 1
        self.min_area = min_area
        self.pending: list[Component] = []
        self.peak_pending = 0

    def add_strip(self, row0: int, classes: np.ndarray, scores: np.ndarray, last: bool = False) -> list[Component]:
        """Rows [row0, row0 + n) of the class map [n,W] uint8 and its class probability [n,W] -> complete
        components (joined with the held ones from the strip above). `last`: no strip follows."""
        if classes.shape[0] == 0:
            return self.finish() if last else []
        pieces, labels = self._trace(row0, classes, scores)
        groups = self._join(pieces, labels[0])
        done, held = [], []
        bottom = labels[-1]
        for group in groups:
            comp = _union(group)
            if not last:
                in_group = [p.label for p in group if isinstance(p, _Piece)]
                cols = np.flatnonzero(np.isin(bottom, in_group)) if in_group else np.empty(0, np.int64)
                if cols.size:
                    comp.bottom_cols = cols
                    held.append(comp)
                    continue
            done.append(comp)
        self.pending = held
        self.peak_pending = max(self.peak_pending, len(held))
        return [c for c in done if c.pixels >= self.min_area]

    def finish(self) -> list[Component]:
        """Everything still held (no strip follows)."""
        done, self.pending = self.pending, []
        return [c for c in done if c.pixels >= self.min_area]

    def _trace(self, row0: int, classes: np.ndarray, scores: np.ndarray) -> tuple[list[_Piece], np.ndarray]:
        """Components of this strip with their stats, and the strip's label image [n,W] (0 = none)."""
        n, width = classes.shape
        to_pixels = Affine(1.0, 0.0, float(self.col0), 0.0, 1.0, float(row0))
        traced = [(shape(geom), int(value)) for geom, value in
                  rasterio.features.shapes(classes, mask=classes > 0, connectivity=4, transform=to_pixels)]
        if not traced:
            return [], np.zeros((n, width), np.int32)
        labels = rasterio.features.rasterize(((g, i + 1) for i, (g, _) in enumerate(traced)), out_shape=(n, width),
                                             transform=to_pixels, fill=0, dtype="int32")
        flat = labels.ravel()
        counts = np.bincount(flat, minlength=len(traced) + 1)
        sums = np.bincount(flat, weights=scores.ravel().astype(np.float64), minlength=len(traced) + 1)
        cell = (self.row_band[row0 - self.row0_area: row0 - self.row0_area + n, None] * self.n_col_bands
                + self.col_band[None, :]).ravel()
        n_cells = int(cell.max()) + 1
        keys = np.unique(flat.astype(np.int64) * n_cells + cell)
        cells_of: dict[int, set[int]] = {}
        for label, cell_id in zip((keys // n_cells).tolist(), (keys % n_cells).tolist()):
            if label:
                cells_of.setdefault(label, set()).add(cell_id)
        pieces = [_Piece(i + 1, Component(value, geom, float(sums[i + 1]), int(counts[i + 1]), cells_of[i + 1]))
                  for i, (geom, value) in enumerate(traced)]
        return pieces, labels

    def _join(self, pieces: list[_Piece], top: np.ndarray) -> list[list]:
        """Groups of held Components and new pieces connected across the strip boundary (union-find)."""
        nodes: list = list(self.pending) + list(pieces)
        parent = list(range(len(nodes)))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        offset = len(self.pending)
        for i, held in enumerate(self.pending):
            below = np.unique(top[held.bottom_cols])
            for label in below[below > 0]:
                if pieces[label - 1].component.class_id == held.class_id:
                    parent[find(i)] = find(offset + int(label) - 1)
        groups: dict[int, list] = {}
        for i, node in enumerate(nodes):
            groups.setdefault(find(i), []).append(node)
        return list(groups.values())


@dataclass
class _Piece:
    """A component traced in the current strip, with its label in the strip's label image."""

    label: int
    component: Component


def _union(group: list) -> Component:
    """One Component from held Components and new _Pieces of one connected group."""
    parts = [p.component if isinstance(p, _Piece) else p for p in group]
    if len(parts) == 1:
        comp = parts[0]
        comp.bottom_cols = None
        return comp
    geometry = shapely.unary_union([p.geometry for p in parts])
    return Component(parts[0].class_id, geometry, sum(p.prob_sum for p in parts), sum(p.pixels for p in parts),
                     set().union(*(p.cells for p in parts)), sum(p.strips for p in parts))
