"""Labels: an engineer's ground truth for a frame, published to the `labels` topic. Built
from the command line, or replayed from what is known about published frames (a manifest
row or a synthetic shot: decision, defect type, product mask)."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lineinspect.schemas import Label
from lineinspect.shared.datasets.manifest import read_manifest
from lineinspect.shared.errors import LineinspectError
from lineinspect.shared.images import encode_png, read_mask

if TYPE_CHECKING:
    from lineinspect.services.camera.sources import Shot

TRUTH_TO_DECISION = {"normal": "pass", "anomaly": "fail"}


def make_label(
    frame_id: str,
    decision: str,
    defect_type: str | None = None,
    product_mask: np.ndarray | None = None,
    labelled_by: str | None = None,
    note: str | None = None,
) -> Label:
    return Label(
        frame_id=frame_id, labelled_at=datetime.now(UTC), labelled_by=labelled_by, decision=decision,
        defect_type=defect_type if decision == "fail" else None,
        product_mask=None if product_mask is None else encode_png(product_mask.astype(bool)), note=note,
    )


def read_frames_log(path: Path) -> list[dict[str, Any]]:
    """The log `lineinspect publish --frames-log` writes: one JSON object per published frame."""
    if not path.is_file():
        raise LineinspectError(f"{path}: frames log not found; write one with `lineinspect publish --frames-log {path}`")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def labels_from_manifest(manifest: Path, frames_log: Path, labelled_by: str | None = None) -> list[Label]:
    """A label for every logged frame whose source is a labelled manifest row (normal/anomaly)."""
    rows = {str(Path(row.path)): row for row in read_manifest(manifest)}
    labels: list[Label] = []
    for frame in read_frames_log(frames_log):
        row = rows.get(str(Path(frame.get("source", ""))))
        if row is None or row.label not in TRUTH_TO_DECISION:
            continue
        mask = read_mask(row.product_mask) if row.product_mask else None
        labels.append(make_label(frame["frame_id"], TRUTH_TO_DECISION[row.label], row.defect_type, mask, labelled_by))
    if not labels:
        raise LineinspectError(
            f"no frame in {frames_log} came from a labelled row of {manifest}; publish with `--manifest {manifest}`"
        )
    return labels


def label_for_shot(frame_id: str, shot: "Shot") -> Label | None:
    """The label of a published shot whose truth is known (synthetic or manifest frames)."""
    if shot.truth not in TRUTH_TO_DECISION:
        return None
    return make_label(frame_id, TRUTH_TO_DECISION[shot.truth], shot.metadata.get("defect_type"), shot.product_mask)
