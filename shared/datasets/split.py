"""Seeded assignment of manifest rows to train / validation / calibration / test, separately
for each image type.

Rules, per image type (applied in this order):
1. Rows already marked `test` (a published held-out set, e.g. neu_det's Validation_Images) stay
   `test` and take no further part.
2. `unknown` rows go to `train`: unlabelled images may be added to training, never scored.
3. A share `train_normal_fraction` of the normal rows goes to `train`, and a share
   `train_anomaly_fraction` (default 0) of the labelled anomalies, stratified by defect type:
   a supervised detector learns from those (neu_det has no normal images at all).
4. With `calibration_fraction` C > 0, a share C of the labelled anomalies (stratified by
   defect type) and the same share C of the normals not placed in train go to `calibration`,
   where a threshold is tuned, so it needs both classes (a warning says when one is missing).
   A group of two or more rows always gives at least one.
5. With `validation_fraction` V > 0, a share V of the train normals moves to `validation`
   (train keeps at least one), and a share V of the train anomalies of each defect type.
6. Everything else goes to `test`.

Rows are shuffled in path order with a generator seeded from (seed, image type), so the same
input and seed give the same output whatever the row order, and adding an image type leaves
the others' splits unchanged. To add a rule, add a step to `_split_image_type`.
"""

import math
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from structlog.typing import FilteringBoundLogger

from lineinspect.shared.datasets.manifest import ManifestRow, Split
from lineinspect.shared.errors import DatasetError
from lineinspect.shared.logs import get_logger


def _log() -> FilteringBoundLogger:
    # Made per use: a logger bound at import keeps the stderr of that moment, which tests and
    # a re-configured CLI replace.
    return get_logger(__name__)


@dataclass(frozen=True)
class SplitPlan:
    """The shares of a split; see the module docstring for how they apply."""

    train_normal_fraction: float
    calibration_fraction: float = 0.0
    validation_fraction: float = 0.0
    train_anomaly_fraction: float = 0.0

    def __post_init__(self) -> None:
        for name, value, upper in (
            ("train normal fraction", self.train_normal_fraction, 1.0),
            ("train anomaly fraction", self.train_anomaly_fraction, 1.0),
            ("calibration fraction", self.calibration_fraction, 1.0),
            ("validation fraction", self.validation_fraction, 1.0),
        ):
            if not 0.0 <= value <= upper:
                raise DatasetError(f"{name} must be between 0 and {upper:g}, got {value:g}")


def split_rows(rows: Sequence[ManifestRow], plan: SplitPlan, seed: int) -> list[ManifestRow]:
    """The rows, in their input order, with `split` assigned by the plan."""
    assigned: dict[int, Split] = {}
    by_type: dict[str, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        by_type[row.image_type].append(index)
    for image_type, indices in sorted(by_type.items()):
        rng = np.random.default_rng([seed, zlib.crc32(image_type.encode("utf-8"))])
        assigned.update(_split_image_type(image_type, [(i, rows[i]) for i in indices], plan, rng))
    return [row.model_copy(update={"split": assigned[i]}) for i, row in enumerate(rows)]


def share(count: int, fraction: float, at_least_one: bool = False) -> int:
    """How many of `count` rows make up `fraction`, rounded half up (not to even)."""
    n = min(count, math.floor(fraction * count + 0.5))
    if at_least_one and fraction > 0 and count >= 2:
        n = max(n, 1)
    return n


def _shuffled(items: list[tuple[int, ManifestRow]], rng: np.random.Generator) -> list[int]:
    # Sorting by path first makes the result independent of the manifest's row order.
    ordered = sorted(items, key=lambda item: item[1].path)
    return [ordered[k][0] for k in rng.permutation(len(ordered))]


def _split_image_type(
    image_type: str, items: list[tuple[int, ManifestRow]], plan: SplitPlan, rng: np.random.Generator
) -> dict[int, Split]:
    result: dict[int, Split] = {}
    pool: list[tuple[int, ManifestRow]] = []
    for index, row in items:
        if row.split == "test":
            result[index] = "test"  # rule 1
        elif row.label == "unknown":
            result[index] = "train"  # rule 2
        else:
            pool.append((index, row))

    normals = _shuffled([(i, r) for i, r in pool if r.label == "normal"], rng)
    n_train = share(len(normals), plan.train_normal_fraction)
    train, rest = normals[:n_train], normals[n_train:]

    by_defect: dict[str, list[tuple[int, ManifestRow]]] = defaultdict(list)
    for i, r in pool:
        if r.label == "anomaly":
            by_defect[r.defect_type or ""].append((i, r))
    # Rule 3, anomalies: drawn only when asked for, so splits made without it stay the same.
    train_anomalies: list[list[int]] = []
    if plan.train_anomaly_fraction > 0:
        for defect_type, group in sorted(by_defect.items()):
            order = _shuffled(group, rng)
            n = share(len(order), plan.train_anomaly_fraction)
            train_anomalies.append(order[:n])
            taken = set(order[:n])
            by_defect[defect_type] = [(i, r) for i, r in group if i not in taken]

    calibration: list[int] = []
    if plan.calibration_fraction > 0:  # rule 4
        calibration += rest[: share(len(rest), plan.calibration_fraction, at_least_one=True)]
        for _, group in sorted(by_defect.items()):
            order = _shuffled(group, rng)
            calibration += order[: share(len(order), plan.calibration_fraction, at_least_one=True)]
        chosen = set(calibration)
        _warn_one_class(image_type, [r for i, r in pool if i in chosen])

    for group in [train, *train_anomalies]:  # rule 5
        n_validation = min(share(len(group), plan.validation_fraction), max(len(group) - 1, 0))
        for i in group[:n_validation]:
            result[i] = "validation"
        for i in group[n_validation:]:
            result[i] = "train"
    for i in calibration:
        result[i] = "calibration"
    for i, _ in pool:
        result.setdefault(i, "test")  # rule 6
    return result


def _warn_one_class(image_type: str, calibration: list[ManifestRow]) -> None:
    labels = {row.label for row in calibration}
    for missing in ("normal", "anomaly"):
        if missing not in labels:
            _log().warning(
                "calibration split has no images of one class; a threshold tuned there is one-sided",
                image_type=image_type,
                missing_label=missing,
            )
