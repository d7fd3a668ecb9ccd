"""Mask-aware merging of instances that several overlapping tiles predicted for one object.

Coordinates are raster pixels (row, col); boxes are ``(row0, col0, row1, col1)``, half-open.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

Box = tuple[int, int, int, int]


@dataclass
class Instance:
    """One predicted object in raster pixel coordinates.

    ``mask``: bool ``[h, w]``, cropped to the instance's bounding box; ``mask[0, 0]`` is raster
    pixel ``(row_off, col_off)``. ``score`` in [0, 1]. ``n_tiles``: how many tile predictions were
    merged into it. ``window``: optional ``(row0, col0, row1, col1)`` of the tile window the
    prediction came from; when two instances both carry one, their masks are compared only where
    both tiles could see (see :func:`merge_seam_duplicates`). ``core``: that tile's core (the cores
    of a grid partition the raster). ``truncated``: the mask reaches an edge of its window that is not
    the edge of the tiled area, so the tile saw only part of the object.
    """

    class_id: int
    score: float
    mask: np.ndarray
    row_off: int
    col_off: int
    n_tiles: int = 1
    merged: bool = False
    window: Box | None = None
    core: Box | None = None
    truncated: bool = False

    @property
    def bbox(self) -> Box:
        """``(row0, col0, row1, col1)`` of the mask array in raster pixels, half-open."""
        h, w = self.mask.shape
        return (self.row_off, self.col_off, self.row_off + h, self.col_off + w)

    @property
    def centre(self) -> tuple[float, float]:
        """``(row, col)`` centre of the bounding box in raster pixels."""
        r0, c0, r1, c1 = self.bbox
        return ((r0 + r1) / 2.0, (c0 + c1) / 2.0)

    def centre_in_core(self) -> bool:
        """Whether the bbox centre lies in this view's tile core (False when the core is unknown)."""
        if self.core is None:
            return False
        row, col = self.centre
        return self.core[0] <= row < self.core[2] and self.core[1] <= col < self.core[3]

    @property
    def area(self) -> int:
        """Number of mask pixels."""
        return int(np.count_nonzero(self.mask))


def _intersect(a: Box, b: Box) -> Box | None:
    r0, c0 = max(a[0], b[0]), max(a[1], b[1])
    r1, c1 = min(a[2], b[2]), min(a[3], b[3])
    return (r0, c0, r1, c1) if r0 < r1 and c0 < c1 else None


def _crop(inst: Instance, box: Box) -> np.ndarray:
    """The part of ``inst.mask`` inside raster box ``box`` (which must lie inside its bbox)."""
    r0, c0 = box[0] - inst.row_off, box[1] - inst.col_off
    return inst.mask[r0 : r0 + box[2] - box[0], c0 : c0 + box[3] - box[1]]


def _count_in(inst: Instance, box: Box | None) -> int:
    if box is None:
        return inst.area
    sub = _intersect(inst.bbox, box)
    return 0 if sub is None else int(np.count_nonzero(_crop(inst, sub)))


def overlap_ratio(a: Instance, b: Instance) -> float:
    """``|a & b| / min(|a|, |b|)`` (0 when the masks do not touch).

    When both instances know their tile window, the areas in the denominator are counted inside
    the two windows' intersection only. A large object cut by a tile border is seen as two partial
    masks that overlap only in the tiles' shared strip, so over the whole masks the ratio can be
    tiny; inside the shared strip both tiles saw the same pixels and the ratio is ~1. Two distinct
    objects in the same tile keep the plain whole-mask ratio (same window for both).
    """
    box = _intersect(a.bbox, b.bbox)
    if box is None:
        return 0.0
    inter = int(np.count_nonzero(_crop(a, box) & _crop(b, box)))
    if inter == 0:
        return 0.0
    shared = None
    if a.window is not None and b.window is not None:
        shared = _intersect(a.window, b.window)
    return inter / max(1, min(_count_in(a, shared), _count_in(b, shared)))


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def _candidate_pairs(instances: list[Instance]):
    """Same-class pairs from different tiles whose bounding boxes intersect: sort by ``row0``, sweep over rows."""
    order = sorted(range(len(instances)), key=lambda i: (instances[i].class_id, instances[i].bbox[0]))
    boxes = [instances[i].bbox for i in range(len(instances))]
    for k, i in enumerate(order):
        for j in order[k + 1 :]:
            if instances[j].class_id != instances[i].class_id or boxes[j][0] >= boxes[i][2]:
                break
            a, b = instances[i], instances[j]
            if a.window is not None and a.window == b.window:
                continue  # one tile's own detections: the model already separated them (its NMS)
            if boxes[j][1] < boxes[i][3] and boxes[i][1] < boxes[j][3]:
                yield i, j


def merge_group(parts: list[Instance]) -> Instance:
    """One instance from views of the same object: union mask, area-weighted score, summed n_tiles."""
    r0 = min(p.bbox[0] for p in parts)
    c0 = min(p.bbox[1] for p in parts)
    r1 = max(p.bbox[2] for p in parts)
    c1 = max(p.bbox[3] for p in parts)
    mask = np.zeros((r1 - r0, c1 - c0), dtype=bool)
    for p in parts:
        h, w = p.mask.shape
        mask[p.row_off - r0 : p.row_off - r0 + h, p.col_off - c0 : p.col_off - c0 + w] |= p.mask
    areas = np.array([p.area for p in parts], dtype=np.float64)
    scores = np.array([p.score for p in parts], dtype=np.float64)
    windows = [p.window for p in parts if p.window is not None]
    window = None
    if windows:
        window = (
            min(w[0] for w in windows), min(w[1] for w in windows),
            max(w[2] for w in windows), max(w[3] for w in windows),
        )
    return Instance(
        class_id=parts[0].class_id,
        score=float((areas * scores).sum() / areas.sum()),
        mask=mask,
        row_off=r0,
        col_off=c0,
        n_tiles=sum(p.n_tiles for p in parts),
        merged=True,
        window=window,
    )


def resolve_group(parts: list[Instance]) -> Instance:
    """One object from the views that several tiles had of it (a group of :func:`split_component`).

    Tile-core ownership, used when every view knows its tile core:
    - some view is complete (not ``truncated``): the object fitted in a tile, so that view saw all of
      it and is kept alone (no union with cut or spurious partial views). Among complete views the
      one whose centre lies in its own tile's core wins (the cores partition the raster, so this
      is the owning tile), then the higher score. Its ``n_tiles`` counts all views, ``merged`` is False.
    - every view is truncated (the object is larger than the overlap): the parts are unioned
      (:func:`merge_group`).
    Views without core information are always unioned (the plain mask-aware merge).
    """
    if len(parts) == 1:
        return parts[0]
    complete = [p for p in parts if not p.truncated]
    if complete and all(p.core is not None for p in parts):
        best = max(complete, key=lambda p: (p.centre_in_core(), p.score))
        return replace(best, n_tiles=sum(p.n_tiles for p in parts), merged=False)
    return merge_group(parts)


def merge_seam_duplicates(instances: list[Instance], overlap_threshold: float = 0.5) -> list[Instance]:
    """Merge instances of the same class that are views of one object from overlapping tiles.

    Two instances are the same object when their masks overlap by at least ``overlap_threshold``
    of the smaller one (see :func:`overlap_ratio` for how tile windows refine this). Grouping is
    transitive, so an object under a tile corner seen by four tiles becomes one, but a group never
    holds two detections of one tile (:func:`split_component`), so a vague detection that touches
    two ships does not fuse them.
    Only pairs whose bounding boxes intersect are compared (row sweep), so mask work grows with the
    number of touching pairs, not with N^2. Different classes are never merged. Instances with an
    empty mask are returned unchanged.

    Each group becomes one instance by :func:`resolve_group` (tile-core ownership: a complete view
    wins alone; only objects every tile saw cut are unioned), kept only if its centre lies in the core
    of a tile that saw it (:func:`owned_by_a_view`). A union has the union mask on the union
    bbox, ``n_tiles`` summed, ``merged=True``, and as score the area-weighted mean of its parts'
    scores: a part cut by a tile border saw less of the object and carries less evidence than a
    larger part, so it should weigh less, and the mean stays in the range of the parts' scores.

    Returns merged and untouched instances in the order of their first part in the input.
    """
    first_member, out = [], []
    for members, edges in seam_components(instances, overlap_threshold):
        for group, obj in objects_of_component(instances, members, edges):
            first_member.append(group[0])
            out.append(obj)
    return [out[k] for k in sorted(range(len(out)), key=first_member.__getitem__)]


def owned_by_a_view(parts: list[Instance], obj: Instance) -> bool:
    """Whether the centre of `obj` lies in the core of a tile that contributed one of its views (True when
    a view has no core). The tile owning that point saw it; if it has no view of the object, its core
    region holds nothing there, and a view from a neighbour's overlap (a fragment or a vague detection
    at the neighbour's border) is not kept."""
    if any(p.core is None for p in parts):
        return True
    row, col = obj.centre
    return any(p.core[0] <= row < p.core[2] and p.core[1] <= col < p.core[3] for p in parts)


def objects_of_component(instances: list[Instance], members: list[int], edges: list[tuple[float, int, int]]
                         ) -> list[tuple[list[int], Instance]]:
    """(group indices, object) for each object of one component (:func:`seam_components`): split into
    groups, each resolved by :func:`resolve_group` and kept if :func:`owned_by_a_view`."""
    found = []
    for group in split_component(instances, members, edges):
        parts = [instances[i] for i in group]
        obj = resolve_group(parts)
        if owned_by_a_view(parts, obj):
            found.append((group, obj))
    return found


def seam_components(instances: list[Instance], overlap_threshold: float = 0.5
                    ) -> list[tuple[list[int], list[tuple[float, int, int]]]]:
    """Connected components of the "same object" graph: an edge joins two same-class instances from
    different tiles whose :func:`overlap_ratio` is at least ``overlap_threshold``.

    Returns, per component, its instance indices (input order) and its edges ``(ratio, i, j)``;
    components in the order of their first member. A component can hold several objects: at a low
    score threshold, a vague detection of one tile can touch two ships that another tile separated.
    """
    if not 0.0 < overlap_threshold <= 1.0:
        raise ValueError(f"overlap_threshold must be in (0, 1], got {overlap_threshold}")
    parent = list(range(len(instances)))
    edges = []
    for i, j in _candidate_pairs(instances):
        ratio = overlap_ratio(instances[i], instances[j])
        if ratio >= overlap_threshold:
            edges.append((ratio, i, j))
            ri, rj = _find(parent, i), _find(parent, j)
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
    members: dict[int, list[int]] = {}
    for i in range(len(instances)):
        members.setdefault(_find(parent, i), []).append(i)
    component_edges: dict[int, list[tuple[float, int, int]]] = {root: [] for root in members}
    for edge in edges:
        component_edges[_find(parent, edge[1])].append(edge)
    return [(m, component_edges[root]) for root, m in members.items()]


def split_component(instances: list[Instance], members: list[int],
                    edges: list[tuple[float, int, int]]) -> list[list[int]]:
    """The objects of one component: edges are taken strongest first (the weaker part's score, then the
    ratio), and two groups are joined only if no tile window appears in both, because one tile's detections
    are distinct objects (its own NMS separated them) and one object has at most one view per tile. Taking
    confident pairs first keeps a vague detection from claiming a confident view's partner.

    Returns groups of indices, each in input order, in the order of their first member.
    """
    group_of = {i: i for i in members}
    windows = {i: {instances[i].window} for i in members}
    parts = {i: [i] for i in members}

    def strength(edge: tuple[float, int, int]) -> tuple[float, float]:
        ratio, i, j = edge
        return (min(instances[i].score, instances[j].score), ratio)

    for _, i, j in sorted(edges, key=strength, reverse=True):
        gi, gj = group_of[i], group_of[j]
        if gi == gj or windows[gi] & windows[gj] - {None}:
            continue
        keep, gone = min(gi, gj), max(gi, gj)
        for k in parts.pop(gone):
            group_of[k] = keep
            parts[keep].append(k)
        windows[keep] |= windows.pop(gone)
    return sorted((sorted(p) for p in parts.values()), key=lambda g: g[0])


NESTED_MIN_AREA_RATIO = 0.4  # a nested duplicate covers at least this fraction of the stronger mask's area


def suppress_nested_duplicates(instances: list[Instance], containment: float = 0.8) -> list[Instance]:
    """Drop detections of one tile that are mostly inside a higher-scoring detection of the same class.

    A two-stage detector's box NMS (IoU 0.5) keeps a detection of half a ship next to the detection of
    the whole ship: their boxes overlap by less than half, but the half's mask lies inside the whole's.
    In score order, an instance ``a`` is dropped when, for a kept stronger ``b``, ``|a & b| / |a|`` is
    at least ``containment`` and ``|a|`` is at least ``NESTED_MIN_AREA_RATIO`` of ``|b|``: a part of
    the object, not a small object inside a blob that covers a cluster (storage tanks, vehicles).
    Distinct objects side by side overlap little and are kept. ``containment`` None or above 1
    disables it. Returns the kept instances in input order.
    """
    if containment is None or containment > 1.0:
        return list(instances)
    areas = [inst.area for inst in instances]

    def nested(i: int, k: int) -> bool:  # is instances[i] a part of the stronger instances[k]?
        a, b = instances[i], instances[k]
        if a.class_id != b.class_id or not 0 < areas[i] >= NESTED_MIN_AREA_RATIO * areas[k]:
            return False
        box = _intersect(a.bbox, b.bbox)
        return box is not None and np.count_nonzero(_crop(a, box) & _crop(b, box)) >= containment * areas[i]

    kept: list[int] = []
    for i in sorted(range(len(instances)), key=lambda i: -instances[i].score):
        if not any(nested(i, k) for k in kept):
            kept.append(i)
    return [instances[i] for i in sorted(kept)]
