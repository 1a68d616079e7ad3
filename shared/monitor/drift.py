"""The drift check of one image type: a window of its most recent frames against the reference
rows its model package carries, with Evidently (`DataDriftPreset` on the image statistics,
`EmbeddingsDrift` on the 32-d embedding): a decision, plus Evidently's HTML and JSON.

The rule. Settings chosen on generated streams (6 image types, 256 px, a reference of 300
normal frames, windows of 50-55 frames with 30-50 % defective products; bench/monitor_drift.py
measures the result) and checked on magnetic_tile:

1. Per column, Evidently's normed Wasserstein distance (W1 / std of the reference); a column
   drifted at >= 0.6, sharpness at >= 1.0. It is an effect size ("moved by 0.6 reference
   std"), so unlike a p-value it does not grow significant with correlated frames. Unchanged
   windows reach 0.56 (sharpness 0.88: scratches and cracks raise the Laplacian variance of a
   defect-heavy window). Evidently's default here, K-S p < 0.05, had p-values down to 4e-6 on
   unchanged windows.
2. Dataset drift when >= 15 % of the tested columns drifted, i.e. 2 of 7-13. A lighting change
   moves 6-10 columns but a colour tint only 2-3 (channel_r, channel_b, saturation_mean), which
   the default 50 % would miss; asking for two keeps one noisy column (a flaky live mask, a
   defect-heavy window's sharpness) from raising the alarm alone.
3. Embedding drift: `EmbeddingsDrift` with MMD on the embedding z-scored by the reference
   (each value's mean and std), drift when MMD^2 > 0.1. Unscaled, the 16 grey levels (std
   ~0.04) drown the 16 edge energies (std ~0.005) and a blur of sigma 1.5 overlaps unchanged
   windows. Z-scored, unchanged windows stay <= 0.03 (0.06 with 20 rows) while a blur of
   sigma 1.0 scores >= 0.5. Compared on the same windows: the classifier ("model", ROC AUC)
   reached 0.80 on unchanged windows and missed a 25 % gain on real tiles; "distance" and
   "ratio" separate blur too, but their defaults (0.2) alarm on every window. A colour tint is
   invisible to this grey-level embedding: rule 2 catches it.
4. normalised_score is not tested by default: it follows the share of defective products
   (scores > 1), which the line reports from its verdicts, and a package's reference scores
   come from other images than the live ones; it drifted in every window with defects and
   would make rule 2 a one-column rule. Add it to `DriftSettings.columns` to test it.
5. The thresholds hold for 300 reference rows and a 50-frame window. With fewer rows the
   sampling noise is wider, so they are raised by sqrt((1/n_ref + 1/n_cur) / (1/300 + 1/50))
   (MMD^2 by its square; never lowered). A package of ~36 training images false-alarmed in
   32 of 882 unchanged windows with the thresholds as set, 1 of 882 raised (1.43x); with 100
   rows, 0 either way.

A tested column is skipped when either side has no value in it (no scores in the reference,
no masks on a line without a mask finder). One check at a time per process: the size of the
t-SNE picture is set through an Evidently module constant while the report runs.
"""

import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.core.report import Snapshot
from evidently.legacy.calculations.stattests import get_stattest
from evidently.legacy.core import ColumnType
from evidently.legacy.metrics.data_drift import embedding_drift_methods as legacy_methods
from evidently.legacy.metrics.data_drift import embeddings_drift
from evidently.metrics import EmbeddingsDrift
from evidently.metrics.embeddings import DistanceDriftMethod, MMDDriftMethod, ModelDriftMethod, RatioDriftMethod
from evidently.presets import DataDriftPreset
from evidently.tests import lte

from lineinspect.shared.errors import LineinspectError
from lineinspect.shared.monitor import embedding_view  # noqa: F401  (Evidently draws the embedding by PCA, not t-SNE)
from lineinspect.shared.monitor.features import DRIFT_COLUMNS, EMBEDDING_COLUMNS, IMAGE_COLUMNS

# Every row the monitor builds has the image statistics; without them it is not a feature row.
REQUIRED_COLUMNS = IMAGE_COLUMNS
TESTED_BY_DEFAULT = tuple(c for c in DRIFT_COLUMNS if c != "normalised_score")
EMBEDDING_NAME = "embedding"
# name -> (the report's method, the Evidently function that computes it)
_EMBEDDING_METHODS = {
    "mmd": (MMDDriftMethod, legacy_methods.mmd),
    "model": (ModelDriftMethod, legacy_methods.model),
    "distance": (DistanceDriftMethod, legacy_methods.distance),
    "ratio": (RatioDriftMethod, legacy_methods.ratio),
}
EMBEDDING_METHODS = tuple(_EMBEDDING_METHODS)
# Below this spread a value is flat in the reference (a corner cell of plain belt); dividing
# by less would turn rounding noise into drift.
_MIN_EMBEDDING_STD = 1e-3


class DriftError(LineinspectError):
    """The frames given to a drift check cannot be compared."""


@dataclass(frozen=True)
class DriftSettings:
    """How a window is judged against the reference (see the module docstring for why)."""

    columns: tuple[str, ...] = TESTED_BY_DEFAULT
    column_method: str = "wasserstein"  # any Evidently numerical stat test
    column_threshold: float = 0.6
    column_thresholds: Mapping[str, float] = field(default_factory=lambda: {"sharpness": 1.0})
    drift_share: float = 0.15  # dataset drift when this share of the tested columns drifted
    embedding_method: str = "mmd"  # one of EMBEDDING_METHODS
    embedding_threshold: float = 0.1  # drift when the method's score exceeds it
    standardise_embedding: bool = True
    min_current_rows: int = 20
    # A package trained from ~30 good images carries ~30 reference rows; fewer cannot stand for a product.
    min_reference_rows: int = 20
    # Rows a side in the t-SNE picture of the embedding (the score always uses every row).
    embedding_plot_rows: int = 100
    # The thresholds hold for these sizes; with fewer rows on either side they are raised by
    # the wider sampling noise (see `noise_factor`).
    tuned_reference_rows: int = 300
    tuned_current_rows: int = 50


@dataclass(frozen=True)
class DriftResult:
    drift_detected: bool  # dataset drift or embedding drift
    dataset_drift: bool
    drift_share: float  # share of tested columns that drifted
    drifted_columns: list[str]
    column_scores: dict[str, float]  # tested column -> Evidently's score (normed Wasserstein by default)
    tested_columns: list[str]
    embedding_drift: bool | None  # None when no embedding columns were given
    embedding_score: float | None
    reference_rows: int
    current_rows: int
    threshold_factor: float  # the thresholds were raised by this for small samples (1.0: as set)
    seconds: float  # wall time of the check

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_drift(
    reference: pd.DataFrame, current: pd.DataFrame, settings: DriftSettings = DriftSettings()
) -> tuple[DriftResult, Snapshot]:
    """Compare `current` (recent frames of one image type) with `reference` (its model
    package's rows): `DataDriftPreset` on the tested columns, `EmbeddingsDrift` on
    EMBEDDING_COLUMNS when both frames have them. Returns the decision and Evidently's run."""
    began = time.perf_counter()
    data = _prepared(reference, current, settings)
    definition = DataDefinition(
        numerical_columns=data.tested + data.embedding,
        embeddings={EMBEDDING_NAME: data.embedding} if data.embedding else None,
    )
    report = Report(_metrics(data.tested, bool(data.embedding), settings, data.factor), include_tests=True)
    with _embedding_plot_rows(settings.embedding_plot_rows):
        snapshot = report.run(
            Dataset.from_pandas(data.current, data_definition=definition),
            Dataset.from_pandas(data.reference, data_definition=definition),
        )
    result = _result(snapshot.dict(), data, time.perf_counter() - began)
    return result, snapshot


def score_drift(reference: pd.DataFrame, current: pd.DataFrame, settings: DriftSettings = DriftSettings()) -> DriftResult:
    """The decision of `check_drift` without its report: the same Evidently stat test on each
    column (what `DataDriftPreset` runs per column, NaN and inf dropped as it does), the same
    share rule, the same Evidently embedding drift method, on the same prepared data. About
    0.05 s instead of ~2 s: drawing the report's plots is nearly all of a check. The monitor
    scores every scheduled window with this and runs `check_drift` (the report) when drift
    starts or ends; tests hold the two to the same answer."""
    began = time.perf_counter()
    data = _prepared(reference, current, settings)
    scale = data.factor if settings.column_method == "wasserstein" else 1.0
    column_scores, drifted = {}, []
    for column in data.tested:
        ref = data.reference[column].replace([np.inf, -np.inf], np.nan).dropna()
        cur = data.current[column].replace([np.inf, -np.inf], np.nan).dropna()
        threshold = settings.column_thresholds.get(column, settings.column_threshold) * scale
        test = get_stattest(ref, cur, ColumnType.Numerical, settings.column_method)
        outcome = test(ref, cur, ColumnType.Numerical, threshold)
        column_scores[column] = float(outcome.drift_score)
        if outcome.drifted:
            drifted.append(column)
    share = len(drifted) / len(data.tested)
    embedding_score = embedding_drift = None
    if data.embedding:
        threshold = _embedding_threshold(settings, data.factor)
        method = _embedding_method(settings, threshold, legacy=True)
        score, _, _ = method(data.current[data.embedding], data.reference[data.embedding])
        embedding_score, embedding_drift = float(score), bool(score > threshold)
    dataset_drift = share >= settings.drift_share
    return DriftResult(
        drift_detected=dataset_drift or bool(embedding_drift), dataset_drift=dataset_drift, drift_share=share,
        drifted_columns=drifted, column_scores=column_scores, tested_columns=data.tested,
        embedding_drift=embedding_drift, embedding_score=embedding_score, reference_rows=len(reference),
        current_rows=len(current), threshold_factor=data.factor, seconds=time.perf_counter() - began,
    )


def write_drift_report(snapshot: Snapshot, out_dir: Path, stem: str) -> tuple[Path, Path]:
    """Evidently's HTML and JSON of the run: out_dir/<stem>.html and out_dir/<stem>.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    html, json_path = out_dir / f"{stem}.html", out_dir / f"{stem}.json"
    # Evidently writes only when given a str; a Path is silently ignored.
    snapshot.save_html(str(html))
    snapshot.save_json(str(json_path))
    return html, json_path


def columns_to_test(reference: pd.DataFrame, current: pd.DataFrame, settings: DriftSettings) -> list[str]:
    """The settings' columns both frames have with at least one value on each side."""
    tested = [
        c for c in settings.columns
        if c in reference and c in current and reference[c].notna().any() and current[c].notna().any()
    ]
    if not tested:
        raise DriftError(
            f"none of the columns {', '.join(settings.columns)} has values in both the reference and "
            "the current window; build rows with lineinspect.shared.monitor.features"
        )
    return tested


def noise_factor(reference_rows: int, current_rows: int, settings: DriftSettings) -> float:
    """How much wider the sampling noise of a distance between a reference and a window of these
    sizes is than at the sizes the thresholds were chosen for: sqrt(1/n + 1/m) relative; never
    below 1, so larger samples keep the thresholds as set."""
    tuned = 1 / settings.tuned_reference_rows + 1 / settings.tuned_current_rows
    return max(1.0, math.sqrt((1 / reference_rows + 1 / current_rows) / tuned))


@dataclass(frozen=True)
class _Prepared:
    reference: pd.DataFrame  # tested + embedding columns, float, embedding z-scored when set
    current: pd.DataFrame
    tested: list[str]
    embedding: list[str]
    factor: float  # noise_factor of the two sizes


def _prepared(reference: pd.DataFrame, current: pd.DataFrame, settings: DriftSettings) -> _Prepared:
    _check_rows(reference, current, settings)
    tested = columns_to_test(reference, current, settings)
    embedding = _embedding_columns(reference, current)
    # Rows read from JSON hold None where a value is unknown: make every column float (NaN).
    reference_data = reference[tested + embedding].astype(float)
    current_data = current[tested + embedding].astype(float)
    if embedding and settings.standardise_embedding:
        reference_data, current_data = _standardised(reference_data, current_data, embedding)
    return _Prepared(reference_data, current_data, tested, embedding, noise_factor(len(reference), len(current), settings))


def _check_rows(reference: pd.DataFrame, current: pd.DataFrame, settings: DriftSettings) -> None:
    for side, frame, least in (
        ("reference", reference, settings.min_reference_rows),
        ("current window", current, settings.min_current_rows),
    ):
        missing = [c for c in REQUIRED_COLUMNS if c not in frame]
        if missing:
            raise DriftError(
                f"{side} lacks the columns {', '.join(missing)}; build its rows with "
                "lineinspect.shared.monitor.features (telemetry_columns or image_columns)"
            )
        if len(frame) < least:
            raise DriftError(
                f"{side} has {len(frame)} rows; a drift check needs at least {least} "
                f"(wait for more frames of this image type, or lower DriftSettings)"
            )


def _embedding_columns(reference: pd.DataFrame, current: pd.DataFrame) -> list[str]:
    """All EMBEDDING_COLUMNS when both frames have them, none when neither has any."""
    present = {side: [c for c in EMBEDDING_COLUMNS if c in frame] for side, frame in
               (("reference", reference), ("current window", current))}
    if not any(present.values()):
        return []
    for side, columns in present.items():
        if len(columns) != len(EMBEDDING_COLUMNS):
            raise DriftError(
                f"{side} has {len(columns)} of the {len(EMBEDDING_COLUMNS)} embedding columns "
                f"({EMBEDDING_COLUMNS[0]}..{EMBEDDING_COLUMNS[-1]}); give both sides all of them or none"
            )
    for side, frame in (("reference", reference), ("current window", current)):
        if frame[list(EMBEDDING_COLUMNS)].isna().any().any():
            raise DriftError(f"{side} has empty embedding values; every frame's telemetry carries its embedding")
    return list(EMBEDDING_COLUMNS)


def _standardised(
    reference: pd.DataFrame, current: pd.DataFrame, embedding: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both frames with the embedding z-scored by the reference, so every value weighs alike."""
    mean = reference[embedding].mean()
    std = reference[embedding].std().clip(lower=_MIN_EMBEDDING_STD)
    reference, current = reference.copy(), current.copy()
    reference[embedding] = (reference[embedding] - mean) / std
    current[embedding] = (current[embedding] - mean) / std
    return reference, current


def _embedding_threshold(settings: DriftSettings, factor: float) -> float:
    """The embedding threshold at this noise factor: an MMD^2 spreads like 1/n + 1/m (factor
    squared), a distance between means like its root; the classifier's AUC and the ratio of
    drifted values are used as set."""
    return settings.embedding_threshold * {"mmd": factor**2, "distance": factor}.get(settings.embedding_method, 1.0)


def _embedding_method(settings: DriftSettings, threshold: float, legacy: bool = False):
    """The embedding drift method for the report (`EmbeddingsDrift`), or with `legacy` the
    Evidently computation behind it, to call directly (`score_drift`)."""
    if settings.embedding_method not in _EMBEDDING_METHODS:
        raise DriftError(
            f"unknown embedding drift method {settings.embedding_method!r}; use one of {', '.join(EMBEDDING_METHODS)}"
        )
    options = {"threshold": threshold} if settings.embedding_method == "ratio" else {"threshold": threshold, "bootstrap": False}
    return _EMBEDDING_METHODS[settings.embedding_method][legacy](**options)


def _metrics(tested: list[str], with_embedding: bool, settings: DriftSettings, factor: float) -> list:
    # A distance's threshold grows with the noise; a p-value test's threshold is kept as set.
    scale = factor if settings.column_method == "wasserstein" else 1.0
    metrics: list = [
        DataDriftPreset(
            columns=tested,
            num_method=settings.column_method,
            num_threshold=settings.column_threshold * scale,
            per_column_threshold={c: t * scale for c, t in settings.column_thresholds.items() if c in tested} or None,
            drift_share=settings.drift_share,
        )
    ]
    if with_embedding:
        # Every method flags drift when its score exceeds the threshold; the test says so in
        # the report and is what the result reads.
        threshold = _embedding_threshold(settings, factor)
        metrics.append(EmbeddingsDrift(
            embeddings_name=EMBEDDING_NAME,
            drift_method=_embedding_method(settings, threshold),
            tests=[lte(threshold)],
        ))
    return metrics


@contextmanager
def _embedding_plot_rows(rows: int) -> Iterator[None]:
    """EmbeddingsDrift pictures the embedding with a t-SNE of up to 2500 rows a side: ~5 s for
    500 + 500 rows on 2 cores, more than the whole check may take. Evidently has no option
    for it, so its module constant is lowered while the report runs (the score is computed
    from every row before the picture is drawn)."""
    saved = embeddings_drift.SAMPLE_CONSTANT
    embeddings_drift.SAMPLE_CONSTANT = rows
    try:
        yield
    finally:
        embeddings_drift.SAMPLE_CONSTANT = saved


def _result(run: dict[str, Any], data: _Prepared, seconds: float) -> DriftResult:
    """The decision as Evidently's run states it: its metric values and test statuses."""
    tested = data.tested
    values = {_metric_key(m["config"]): m["value"] for m in run["metrics"]}
    failed = {_metric_key(t["metric_config"]["params"]) for t in run["tests"] if t["status"] == "FAIL"}
    column_scores = {c: float(values[("ValueDrift", c)]) for c in tested}
    drifted = [c for c in tested if ("ValueDrift", c) in failed]
    embedding_score = values.get(("EmbeddingsDrift", EMBEDDING_NAME))
    embedding_drift = None if embedding_score is None else ("EmbeddingsDrift", EMBEDDING_NAME) in failed
    dataset_drift = ("DriftedColumnsCount", None) in failed
    return DriftResult(
        drift_detected=dataset_drift or bool(embedding_drift),
        dataset_drift=dataset_drift,
        drift_share=float(values[("DriftedColumnsCount", None)]["share"]),
        drifted_columns=drifted,
        column_scores=column_scores,
        tested_columns=tested,
        embedding_drift=embedding_drift,
        embedding_score=None if embedding_score is None else float(embedding_score),
        reference_rows=len(data.reference),
        current_rows=len(data.current),
        threshold_factor=data.factor,
        seconds=seconds,
    )


def _metric_key(config: dict[str, Any]) -> tuple[str, str | None]:
    """(metric kind, its column or embedding name) from a metric's config in Evidently's JSON."""
    kind = config["type"].rsplit(":", 1)[-1]
    return kind, config.get("column", config.get("embeddings_name"))
