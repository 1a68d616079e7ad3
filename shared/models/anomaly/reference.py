"""The drift reference an anomaly package carries: the monitor's feature row
(`shared.monitor.features`) of each training image, so the monitor can tell whether the
frames it sees still look like what the model learnt from. Images the memory bank did not
see also carry their normalised score (a bank image scores near 0 and would mislead)."""

import json
from collections.abc import Sequence

import numpy as np

from lineinspect.shared.datasets.manifest import ManifestRow
from lineinspect.shared.models.anomaly.inference import ReferenceLevels

REFERENCE_NAME = "reference_telemetry.jsonl"
MAX_REFERENCE_ROWS = 500  # per package: enough for the tests, small enough to load at once


def _spread(rows: Sequence[ManifestRow], limit: int) -> list[ManifestRow]:
    if len(rows) <= limit:
        return list(rows)
    picks = np.linspace(0, len(rows) - 1, limit).round().astype(int)
    return [rows[i] for i in picks]


def reference_rows(
    bank: Sequence[ManifestRow],
    scored: Sequence[ManifestRow],
    scored_measures: np.ndarray,
    levels: ReferenceLevels,
    threshold: float,
) -> bytes:
    """JSON Lines: one feature row per image, with `image_type` and `source` ('bank' or
    'held_back'); `scored` are the normal images measured for the threshold, in order."""
    # Late import: the monitor's features module imports the line's telemetry helpers.
    from lineinspect.shared.models.anomaly.training import load_row
    from lineinspect.shared.monitor.features import image_columns

    lines: list[str] = []
    held_back = list(zip(scored, scored_measures, strict=True))
    share = max(1, MAX_REFERENCE_ROWS - min(len(held_back), MAX_REFERENCE_ROWS // 2))
    for row in _spread(bank, share):
        image, mask = load_row(row)
        lines.append(json.dumps({"image_type": row.image_type, "source": "bank", **image_columns(image, mask, None)}))
    for row, (peak, mean) in held_back[: MAX_REFERENCE_ROWS // 2]:
        image, mask = load_row(row)
        normalised = levels.score(float(peak), float(mean)) / threshold
        lines.append(json.dumps(
            {"image_type": row.image_type, "source": "held_back", **image_columns(image, mask, round(normalised, 5))}
        ))
    return ("\n".join(lines) + "\n").encode()
