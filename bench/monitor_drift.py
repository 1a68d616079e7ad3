"""The drift check of one image type (shared/monitor/drift.py, default settings) on generated
streams: does it stay quiet on an unchanged line with defective products, does it notice a
changed look within one window, and how long does a check with its report take.

Per image type (`--image-types`, 256 px): a reference of 300 normal frames, as a package
carries it (half without a normalised score, half with N(0.55, 0.12)), and a live stream from
other seeds with 30 %, 40 %, 50 % defective products (scores: normal N(0.6, 0.15), defective
U(1, 3)); windows of 50 frames.

Figures:
- `windows_checked`, `false_alarms`: windows every 20 frames of the unchanged streams;
  `unchanged_max_drift_share`, `unchanged_max_embedding_score`: how close they came
  (dataset drift at 0.15, embedding drift above 0.1);
- `normalised_score_drift_rate`, `false_alarms_with_normalised_score`: every 5th unchanged
  window again with normalised_score among the tested columns;
- `detection_rate_<change>`: share of windows of changed frames flagged (`--change-windows`
  per image type): brightness (gain 1.25), gamma (1.4, darker), blur_1.5, blur_2.0 (Gaussian
  sigma), tint (red x1.1, blue x0.9), finish (another surface texture, 1.5x as rough), and
  the demo's changes (services/camera/changes.py: demo_lighting, demo_blur, demo_finish);
- `report_seconds_500_500`: check_drift + write_drift_report, 500 reference + 500 current
  rows (median of 3 after a warm-up); `report_seconds_window`: a report of the reference against
  one window; `score_seconds_window`: the monitor's scheduled check of one window (the same
  decision, no report; median of 5).
- with `--real-data`: the same on magnetic_tile (reference 300 defect-free tiles, a stream of
  the others and the defective ones, 256 px): `real_*` figures.

    python bench/monitor_drift.py [--json D.json] [--image-types 3] [--windows 100]
                                  [--change-windows 8] [--workers 2] [--real-data] [--reference-rows 300]
"""

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from lineinspect.services.camera.changes import LOOK_CHANGES
from lineinspect.shared.config import get_settings
from lineinspect.shared.datasets.synth import image_type_names, style_for
from lineinspect.shared.datasets.synth.dataset import defect_plan, sample_rng
from lineinspect.shared.datasets.synth.defects import draw_defect
from lineinspect.shared.datasets.synth.scene import render_scene
from lineinspect.shared.images import read_image
from lineinspect.shared.monitor.drift import TESTED_BY_DEFAULT, DriftSettings, check_drift, score_drift, write_drift_report
from lineinspect.shared.monitor.features import image_columns
from common import machine, print_figures

SIZE = 256
WINDOW, STEP = 50, 20  # the monitor's default drift_window; a check every 20 frames
REFERENCE_ROWS = 300
REFERENCE_SEED, LIVE_SEED = 1, 2
ANOMALY_FRACTIONS = (0.3, 0.4, 0.5)
TEXTURES = ("grain", "brushed", "speckle")
Change = Callable[[np.ndarray], np.ndarray]


def gain(image: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(image.astype(np.float32) * factor, 0, 255).astype(np.uint8)


def gamma(image: np.ndarray, exponent: float) -> np.ndarray:
    table = np.clip(255.0 * (np.arange(256) / 255.0) ** exponent, 0, 255).astype(np.uint8)
    return cv2.LUT(image, table)


def tint(image: np.ndarray, red: float, blue: float) -> np.ndarray:
    scaled = image.astype(np.float32) * np.array([blue, 1.0, red], np.float32)  # BGR
    return np.clip(scaled, 0, 255).astype(np.uint8)


CHANGES: dict[str, Change] = {
    "brightness": lambda im: gain(im, 1.25),
    "gamma": lambda im: gamma(im, 1.4),
    "blur_1.5": lambda im: cv2.GaussianBlur(im, (0, 0), 1.5),
    "blur_2.0": lambda im: cv2.GaussianBlur(im, (0, 0), 2.0),
    "tint": lambda im: tint(im, 1.1, 0.9),
    **{f"demo_{name}": change for name, change in LOOK_CHANGES.items()},
}
FINISH = "finish"  # rendered with another product style, not applied to a frame


# ---- rows ------------------------------------------------------------------------------------
def synthetic_rows(job: tuple[str, int, int, str | None, float | None, tuple[str, ...], bool]) -> dict[str, dict]:
    """Feature rows of one frame (seed, index) as it is and under each named change."""
    image_type, seed, index, defect, score, changes, finish = job
    rng = sample_rng(seed, image_type, index)
    style = style_for(image_type)
    image, mask = _render(style, rng, defect)
    rows = {"none": image_columns(image, mask, score)}
    rows.update({name: image_columns(CHANGES[name](image), mask, score) for name in changes})
    if finish:
        rougher = replace(style, texture=TEXTURES[(TEXTURES.index(style.texture) + 1) % len(TEXTURES)],
                          texture_strength=style.texture_strength * 1.5)
        image, mask = _render(rougher, sample_rng(seed, image_type, index), defect)
        rows[FINISH] = image_columns(image, mask, score)
    return rows


def _render(style, rng: np.random.Generator, defect: str | None) -> tuple[np.ndarray, np.ndarray]:
    scene = render_scene(style, rng, SIZE, False)
    if defect is None:
        return scene.image, scene.product_mask
    image, _ = draw_defect(rng, scene.image, scene.product_mask, defect)
    return image, scene.product_mask


def reference_rows(pool: ProcessPoolExecutor, image_type: str, count: int) -> pd.DataFrame:
    """Normal frames as a package's reference: the first half without a score (memory bank
    images), the second with the score of a held-back image."""
    scores = np.random.default_rng(REFERENCE_SEED)
    jobs = [(image_type, REFERENCE_SEED, i, None, None if i < count // 2 else float(scores.normal(0.55, 0.12)), (), False)
            for i in range(count)]
    return pd.DataFrame([r["none"] for r in pool.map(synthetic_rows, jobs, chunksize=16)])


def live_streams(pool: ProcessPoolExecutor, image_type: str, fraction: float, frames: int,
                 change_frames: int) -> dict[str, pd.DataFrame]:
    """{"none": the live stream, change: its first `change_frames` frames changed}."""
    plan = defect_plan(LIVE_SEED, image_type, frames, fraction)
    scores = np.random.default_rng(LIVE_SEED)
    jobs = [
        (image_type, LIVE_SEED, i, defect,
         float(scores.uniform(1.0, 3.0) if defect else scores.normal(0.6, 0.15)),
         tuple(CHANGES) if i < change_frames else (), i < change_frames)
        for i, defect in enumerate(plan)
    ]
    live = list(pool.map(synthetic_rows, jobs, chunksize=16))
    streams = {"none": pd.DataFrame([r["none"] for r in live])}
    for name in (*CHANGES, FINISH):
        streams[name] = pd.DataFrame([r[name] for r in live[:change_frames]])
    return streams


REAL_CHANGES = ("brightness", "gamma", "blur_1.5", "blur_2.0")  # grey tiles: no tint, no finish


def tile_rows(job: tuple[str, bool]) -> dict[str, dict]:
    path, changed = job
    image = cv2.resize(read_image(path), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    rows = {"none": image_columns(image, None, None)}
    if changed:
        rows.update({name: image_columns(CHANGES[name](image), None, None) for name in REAL_CHANGES})
    return rows


def tile_streams(pool: ProcessPoolExecutor, folder: Path, change_frames: int
                 ) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], float]:
    rng = np.random.default_rng(0)
    free = sorted(str(p) for p in (folder / "MT_Free" / "Imgs").glob("*.jpg"))
    defective = sorted(str(p) for d in folder.glob("MT_*") if d.name != "MT_Free" for p in (d / "Imgs").glob("*.jpg"))
    free = [free[i] for i in rng.permutation(len(free))]
    stream = free[REFERENCE_ROWS:] + defective
    stream = [stream[i] for i in rng.permutation(len(stream))]
    reference = pd.DataFrame([r["none"] for r in pool.map(tile_rows, [(p, False) for p in free[:REFERENCE_ROWS]], chunksize=16)])
    live = list(pool.map(tile_rows, [(p, i < change_frames) for i, p in enumerate(stream)], chunksize=16))
    streams = {"none": pd.DataFrame([r["none"] for r in live])}
    for name in REAL_CHANGES:
        streams[name] = pd.DataFrame([r[name] for r in live[:change_frames]])
    return reference, streams, len(defective) / len(stream)


# ---- checks ----------------------------------------------------------------------------------
def one_check(job: tuple[pd.DataFrame, pd.DataFrame, DriftSettings]) -> dict[str, Any]:
    """The monitor's scheduled decision (Evidently's stat tests without the report; the report
    gives the same answer, tests/test_monitor_drift.py holds them to it)."""
    reference, current, settings = job
    return score_drift(reference, current, settings).as_dict()


def windows(frame: pd.DataFrame, step: int) -> list[pd.DataFrame]:
    return [frame.iloc[s:s + WINDOW] for s in range(0, len(frame) - WINDOW + 1, step)]


def judge(pool: ProcessPoolExecutor, reference: pd.DataFrame, streams: dict[str, pd.DataFrame],
          tally: dict[str, list[dict[str, Any]]]) -> None:
    """Check every window of every stream; results appended to tally[stream name]."""
    default, with_score = DriftSettings(), DriftSettings(columns=(*TESTED_BY_DEFAULT, "normalised_score"))
    jobs, names = [], []
    for name, frame in streams.items():
        for i, window in enumerate(windows(frame, STEP if name == "none" else WINDOW)):
            jobs.append((reference, window, default))
            names.append(name)
            if name == "none" and i % 5 == 0 and frame["normalised_score"].notna().any():
                jobs.append((reference, window, with_score))
                names.append("none_with_score")
    for name, result in zip(names, pool.map(one_check, jobs), strict=True):
        tally.setdefault(name, []).append(result)


def figures_of(tally: dict[str, list[dict[str, Any]]], prefix: str = "") -> dict[str, object]:
    unchanged = tally["none"]
    figures: dict[str, object] = {
        f"{prefix}windows_checked": len(unchanged),
        f"{prefix}false_alarms": sum(r["drift_detected"] for r in unchanged),
        f"{prefix}unchanged_max_drift_share": max(r["drift_share"] for r in unchanged),
        f"{prefix}unchanged_max_embedding_score": max(r["embedding_score"] for r in unchanged),
    }
    scored = tally.get("none_with_score")
    if scored:
        figures[f"{prefix}normalised_score_drift_rate"] = sum("normalised_score" in r["drifted_columns"] for r in scored) / len(scored)
        figures[f"{prefix}false_alarms_with_normalised_score"] = sum(r["drift_detected"] for r in scored)
    for name, results in tally.items():
        if name.startswith("none"):
            continue
        figures[f"{prefix}detection_rate_{name}"] = sum(r["drift_detected"] for r in results) / len(results)
        figures[f"{prefix}embedding_rate_{name}"] = sum(bool(r["embedding_drift"]) for r in results) / len(results)
    return figures


def score_seconds(reference: pd.DataFrame, current: pd.DataFrame, runs: int = 5) -> float:
    """Median wall time of score_drift (a scheduled check without its report), after one warm-up."""
    score_drift(reference, current)
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        score_drift(reference, current)
        times.append(time.perf_counter() - began)
    return float(np.median(times))


def report_seconds(reference: pd.DataFrame, current: pd.DataFrame, runs: int = 3) -> float:
    """Median wall time of check_drift + write_drift_report, after one warm-up."""
    spent = []
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as folder:
        for run in range(runs + 1):
            began = time.perf_counter()
            _, snapshot = check_drift(reference, current)
            write_drift_report(snapshot, Path(folder), f"run{run}")
            spent.append(time.perf_counter() - began)
    return statistics.median(spent[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write all figures here")
    parser.add_argument("--image-types", type=int, default=3)
    parser.add_argument("--windows", type=int, default=100, help="unchanged windows per image type")
    parser.add_argument("--change-windows", type=int, default=8, help="windows per change and image type")
    parser.add_argument("--workers", type=int, default=2, help="processes for rendering and checks")
    parser.add_argument("--real-data", action="store_true", help="also magnetic_tile from the data dir")
    parser.add_argument("--reference-rows", type=int, default=REFERENCE_ROWS,
                        help="reference rows per image type (a package trained from ~30 images carries ~30)")
    args = parser.parse_args()
    frames = WINDOW + STEP * (args.windows - 1)
    change_frames = WINDOW * args.change_windows
    tally: dict[str, list[dict[str, Any]]] = {}
    figures: dict[str, object] = {"machine": machine(), "image_types": args.image_types, "size": SIZE,
                                  "reference_rows": args.reference_rows, "window": WINDOW}
    with ProcessPoolExecutor(args.workers) as pool:
        for k, image_type in enumerate(image_type_names(args.image_types)):
            began = time.perf_counter()
            reference = reference_rows(pool, image_type, args.reference_rows)
            fraction = ANOMALY_FRACTIONS[k % len(ANOMALY_FRACTIONS)]
            streams = live_streams(pool, image_type, fraction, max(frames, change_frames, 500), change_frames)
            if k == 0:  # timed alone, before the pool's checks compete for the cores
                figures["report_seconds_500_500"] = report_seconds(
                    reference_rows(pool, image_type, 500), streams["none"].iloc[:500])
                figures["report_seconds_window"] = report_seconds(reference, streams["none"].iloc[:WINDOW])
                figures["score_seconds_window"] = score_seconds(reference, streams["none"].iloc[:WINDOW])
            streams["none"] = streams["none"].iloc[:frames]
            judge(pool, reference, streams, tally)
            so_far = figures_of(tally)
            print(f"{image_type}: checked in {time.perf_counter() - began:.0f} s; so far "
                  f"{so_far['false_alarms']} false alarms in {so_far['windows_checked']} windows", flush=True)
        figures.update(figures_of(tally))
        if args.real_data:
            folder = get_settings().data_dir / "magnetic_tile"
            if folder.is_dir():
                reference, streams, share = tile_streams(pool, folder, change_frames)
                real: dict[str, list[dict[str, Any]]] = {}
                judge(pool, reference, streams, real)
                figures["real_defective_share"] = share
                figures.update(figures_of(real, "real_"))
            else:
                print(f"real data {folder} is absent: skipped (see shared/data/DATA.md)")
    print_figures(figures, args.json)


if __name__ == "__main__":
    main()
