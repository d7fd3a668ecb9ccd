"""`make demo`: segment the bundled SAR scene with the default shipped model, write a GeoPackage and a
PNG preview with the polygons drawn on the image, say where they are and how many ships were found, and score
them against the scene's reference polygons (object precision, recall and F1 at mask IoU >= 0.5, `rsseg score`).

    python -m scripts.demo [--scene data/demo/hrsid_demo_scene.tif] [--truth data/demo/hrsid_demo_truth.gpkg]
                           [--out-dir out/demo] [--model NAME]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from engine.cli import main as rsseg
from engine.zoo import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scene", default=str(ROOT / "data" / "demo" / "hrsid_demo_scene.tif"))
    parser.add_argument("--truth", default=str(ROOT / "data" / "demo" / "hrsid_demo_truth.gpkg"),
                        help="reference polygons to score against ('' to skip)")
    parser.add_argument("--out-dir", default=str(ROOT / "out" / "demo"))
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args(argv)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gpkg = out_dir / "ships.gpkg"
    # --overwrite: the demo owns this file; a GeoPackage would otherwise keep the layers of earlier runs
    code = rsseg(["segment", args.scene, "--model", args.model, "--out", str(gpkg), "--overwrite"])
    if code != 0:
        return code
    import fiona

    from engine.vector.preview import render_preview

    with fiona.open(gpkg) as layer:
        count = len(layer)
    png = render_preview(args.scene, gpkg, out_dir / "ships_preview.png")
    print(f"demo: {count} ships found in {args.scene}")
    if args.truth:
        from engine.vector.score import score_files

        overall = score_files(gpkg, args.truth).by_class["all"]
        print(f"demo: against the {overall.tp + overall.fn} reference ships: {overall.tp} found, {overall.fp} false "
              f"alarms, {overall.fn} missed; precision {overall.precision or 0:.2f}, recall {overall.recall or 0:.2f}, "
              f"F1 {overall.f1 or 0:.2f} (mask IoU >= 0.5)")
    print(f"demo: polygons  -> {gpkg}")
    print(f"demo: preview   -> {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
