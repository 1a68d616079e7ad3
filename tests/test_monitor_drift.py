"""The drift check of one image type: an unchanged window with its share of defective products
is not drift, a changed look is (brighter frames as image-feature drift, a blurred lens as
embedding drift), the report files hold the figures, and unusable input is refused clearly.
Frames are generated here, small (128 px)."""

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from lineinspect.shared.datasets.synth import generate_sample
from lineinspect.shared.datasets.synth.dataset import defect_plan, sample_rng
from lineinspect.shared.monitor.drift import (
    DriftError,
    DriftResult,
    DriftSettings,
    check_drift,
    columns_to_test,
    noise_factor,
    score_drift,
    write_drift_report,
)
from lineinspect.shared.monitor.features import EMBEDDING_COLUMNS, image_columns

IMAGE_TYPE = "disc"
SIZE = 128


def rows(seed: int, count: int, anomaly_fraction: float, change=lambda image: image) -> pd.DataFrame:
    """Feature rows of generated frames; defective ones score above 1, normal ones near 0.6."""
    scores = np.random.default_rng(seed)
    out = []
    for index, defect in enumerate(defect_plan(seed, IMAGE_TYPE, count, anomaly_fraction)):
        sample = generate_sample(IMAGE_TYPE, sample_rng(seed, IMAGE_TYPE, index), SIZE, defect)
        score = scores.uniform(1.0, 3.0) if defect else scores.normal(0.6, 0.15)
        out.append(image_columns(change(sample.image), sample.product_mask, float(score)))
    return pd.DataFrame(out)


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    """Normal products only, as a model package's training images; no scores (memory bank)."""
    return rows(seed=1, count=120, anomaly_fraction=0.0).assign(normalised_score=None)


@pytest.fixture(scope="module")
def window() -> pd.DataFrame:
    """50 frames from the same line as the reference, 40 % of them defective."""
    return rows(seed=2, count=50, anomaly_fraction=0.4)


@pytest.fixture(scope="module")
def unchanged(reference: pd.DataFrame, window: pd.DataFrame) -> tuple[DriftResult, object]:
    return check_drift(reference, window)


def test_an_unchanged_window_with_defective_products_is_not_drift(unchanged: tuple[DriftResult, object]) -> None:
    result, _ = unchanged
    assert not result.drift_detected and not result.dataset_drift and result.embedding_drift is False
    assert result.drifted_columns == []
    assert (result.reference_rows, result.current_rows) == (120, 50)
    # The reference has no scores, so the score is not among the tested columns.
    assert "normalised_score" not in result.tested_columns and "sharpness" in result.tested_columns


def test_brighter_frames_are_image_feature_drift(reference: pd.DataFrame) -> None:
    brighter = lambda image: np.clip(image.astype(np.float32) * 1.25, 0, 255).astype(np.uint8)  # noqa: E731
    result, _ = check_drift(reference, rows(seed=3, count=50, anomaly_fraction=0.4, change=brighter))
    assert result.drift_detected and result.dataset_drift
    assert {"mean", "p95", "channel_r", "channel_g", "channel_b"} <= set(result.drifted_columns)
    assert result.drift_share >= DriftSettings().drift_share


def test_a_blurred_lens_is_embedding_drift(reference: pd.DataFrame) -> None:
    blurred = lambda image: cv2.GaussianBlur(image, (0, 0), 1.5)  # noqa: E731
    result, _ = check_drift(reference, rows(seed=4, count=50, anomaly_fraction=0.4, change=blurred))
    assert result.drift_detected and result.embedding_drift is True
    assert result.embedding_score > DriftSettings().embedding_threshold
    assert "sharpness" in result.drifted_columns


def test_the_report_files_hold_the_figures(unchanged: tuple[DriftResult, object], tmp_path: Path) -> None:
    result, snapshot = unchanged
    html, json_path = write_drift_report(snapshot, tmp_path / "drift", "disc-window-1")
    assert html == tmp_path / "drift" / "disc-window-1.html" and json_path.with_suffix(".html") == html
    assert "<html" in html.read_text(encoding="utf-8").lower()
    run = json.loads(json_path.read_text(encoding="utf-8"))
    values = {m["config"].get("column", m["config"].get("embeddings_name")): m["value"] for m in run["metrics"]}
    for column, score in result.column_scores.items():
        assert values[column] == pytest.approx(score)
    assert values["embedding"] == pytest.approx(result.embedding_score)
    assert json.loads(json.dumps(result.as_dict())) == result.as_dict()


def test_too_few_rows_is_a_clear_error(reference: pd.DataFrame) -> None:
    with pytest.raises(DriftError, match="current window has 12 rows; a drift check needs at least 20"):
        check_drift(reference, rows(seed=5, count=12, anomaly_fraction=0.0))


def test_missing_columns_are_a_clear_error(reference: pd.DataFrame) -> None:
    window = rows(seed=5, count=20, anomaly_fraction=0.0)
    with pytest.raises(DriftError, match="current window lacks the columns sharpness"):
        check_drift(reference, window.drop(columns=["sharpness"]))
    with pytest.raises(DriftError, match="current window has 31 of the 32 embedding columns"):
        check_drift(reference, window.drop(columns=[EMBEDDING_COLUMNS[-1]]))


def test_columns_without_values_on_a_side_are_not_tested(reference: pd.DataFrame) -> None:
    window = rows(seed=5, count=20, anomaly_fraction=0.0).assign(mask_area_fraction=None)
    settings = DriftSettings(columns=("mean", "mask_area_fraction", "normalised_score"))
    assert columns_to_test(reference, window, settings) == ["mean"]


def test_thresholds_are_raised_for_small_samples_never_lowered() -> None:
    settings = DriftSettings()
    assert noise_factor(300, 50, settings) == 1.0 and noise_factor(500, 500, settings) == 1.0
    # A package of ~36 training images: sampling noise ~1.4x wider than at 300 rows.
    assert noise_factor(36, 50, settings) == pytest.approx(1.43, abs=0.01)
    assert noise_factor(300, 20, settings) > noise_factor(300, 50, settings)


def test_a_small_reference_checks_with_raised_thresholds(reference: pd.DataFrame, window: pd.DataFrame) -> None:
    result, snapshot = check_drift(reference.iloc[:30], window)
    assert not result.drift_detected and result.threshold_factor == pytest.approx(1.51, abs=0.01)
    thresholds = {t["metric_config"]["params"].get("column"): t["description"] for t in snapshot.dict()["tests"]}
    assert "The drift threshold is 0.91" in thresholds["mean"]


@pytest.mark.parametrize("change", ["none", "brighter", "blur", "tint", "small reference", "no masks"])
def test_the_quick_score_gives_the_reports_answer(reference: pd.DataFrame, window: pd.DataFrame, change: str) -> None:
    """The monitor scores every scheduled window without drawing the report; it must decide
    exactly as the report would, column by column."""
    ref, cur = reference, window
    if change == "brighter":
        cur = rows(seed=3, count=50, anomaly_fraction=0.4, change=lambda image: cv2.convertScaleAbs(image, alpha=1.2, beta=10))
    elif change == "blur":
        cur = rows(seed=3, count=50, anomaly_fraction=0.4, change=lambda image: cv2.GaussianBlur(image, (0, 0), 1.5))
    elif change == "tint":
        cur = rows(seed=3, count=50, anomaly_fraction=0.4, change=lambda image: cv2.add(image, np.array([0.0, 0.0, 25.0, 0.0])))
    elif change == "small reference":
        ref = reference.head(30)
    elif change == "no masks":
        cur = window.assign(mask_area_fraction=None)
    report, _ = check_drift(ref, cur)
    quick = score_drift(ref, cur)
    assert quick.drift_detected == report.drift_detected and quick.dataset_drift == report.dataset_drift
    assert quick.drifted_columns == report.drifted_columns and quick.tested_columns == report.tested_columns
    assert quick.drift_share == pytest.approx(report.drift_share)
    assert quick.column_scores == pytest.approx(report.column_scores, rel=1e-9)
    assert quick.embedding_drift == report.embedding_drift
    assert quick.embedding_score == pytest.approx(report.embedding_score, rel=1e-9)


def test_a_drift_episode_writes_its_report_and_alert_when_it_starts_not_at_every_check(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from lineinspect.schemas import Telemetry
    from lineinspect.shared.config import get_settings
    from lineinspect.shared.line.telemetry import image_embedding, image_stats
    from lineinspect.shared.monitor.checks import DriftChecker
    from lineinspect.shared.monitor.reference import References
    from lineinspect.shared.monitor.store import MonitorStore

    (tmp_path / "packages").mkdir()  # no package: the reference is the stream's first 60 frames
    settings = get_settings().model_copy(update={
        "packages": tmp_path / "packages", "reports_dir": tmp_path / "reports", "reference_fallback": 60,
        "drift_window": 40, "drift_report_every_s": 3600.0,
    })
    store = MonitorStore(tmp_path / "monitor.db")
    alerts = []
    checker = DriftChecker(store, References(settings.packages, store, 60), settings, alerts.append)
    plan = defect_plan(5, IMAGE_TYPE, 160, 0.3)

    def arrive(first: int, count: int, change=lambda image: image) -> None:  # noqa: ANN001
        with store.transaction() as db:
            for index in range(first, first + count):
                sample = generate_sample(IMAGE_TYPE, sample_rng(5, IMAGE_TYPE, index), SIZE, plan[index])
                image = change(sample.image)
                store.add_telemetry(db, Telemetry(
                    frame_id=f"f{index:04d}", line_id="line-1", camera_id="cam-1", image_type=IMAGE_TYPE,
                    captured_at=datetime.now(UTC), image_stats=image_stats(image), embedding=image_embedding(image),
                    anomaly_score=0.5, normalised_score=0.6, mask_area_fraction=float(sample.product_mask.mean()),
                    mask_confidence=0.9, mask_grade=1, decision="pass", latency_ms=50.0,
                    model_versions={"mask": "m", "anomaly": "a", "reviewer": "r"},
                ))

    def brighter(image: np.ndarray) -> np.ndarray:
        return cv2.convertScaleAbs(image, alpha=1.25, beta=15)

    arrive(0, 100)
    steady = [checker.check(IMAGE_TYPE), checker.check(IMAGE_TYPE)]
    arrive(100, 40, brighter)
    drifted = [checker.check(IMAGE_TYPE)]
    arrive(140, 20, brighter)
    drifted += [checker.check(IMAGE_TYPE), checker.check(IMAGE_TYPE)]

    assert [c["drift_detected"] for c in steady + drifted] == [0, 0, 1, 1, 1]
    assert not any(c["report_html"] for c in steady), "no report while nothing changes (the periodic one is an hour away)"
    assert drifted[0]["report_html"] and not any(c["report_html"] for c in drifted[1:]), "the report where drift starts"
    assert [a.kind for a in alerts] == ["drift"] and alerts[0].report_url == drifted[0]["report_html"]
