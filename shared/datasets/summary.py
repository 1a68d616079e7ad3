"""Counts of a manifest's rows per split, label, defect type and image type, as a dict (for
`--json` and model packages' training-data summaries) and as a readable table."""

from collections import Counter
from collections.abc import Iterable
from typing import Any

from lineinspect.shared.datasets.manifest import ManifestRow

SPLIT_ORDER = ("unassigned", "train", "validation", "calibration", "test")
LABEL_ORDER = ("normal", "anomaly", "unknown")


def summarize(rows: Iterable[ManifestRow]) -> dict[str, Any]:
    """Totals per split, label, defect type and image type, and per image type x split x label."""
    rows = list(rows)
    by_type_split: dict[str, dict[str, dict[str, int]]] = {}
    for row in rows:
        labels = by_type_split.setdefault(row.image_type, {}).setdefault(row.split, {})
        labels[row.label] = labels.get(row.label, 0) + 1
    return {
        "rows": len(rows),
        "by_split": _ordered(Counter(r.split for r in rows), SPLIT_ORDER),
        "by_label": _ordered(Counter(r.label for r in rows), LABEL_ORDER),
        "by_defect_type": dict(sorted(Counter(r.defect_type for r in rows if r.defect_type).items())),
        "by_image_type": dict(sorted(Counter(r.image_type for r in rows).items())),
        "by_image_type_split_label": {
            image_type: {
                split: _ordered(Counter(labels), LABEL_ORDER)
                for split, labels in sorted(splits.items(), key=lambda kv: SPLIT_ORDER.index(kv[0]))
            }
            for image_type, splits in sorted(by_type_split.items())
        },
        "defect_types_by_split": {
            split: dict(sorted(Counter(r.defect_type for r in rows if r.split == split and r.defect_type).items()))
            for split in SPLIT_ORDER
            if any(r.split == split and r.defect_type for r in rows)
        },
    }


def format_summary(summary: dict[str, Any]) -> str:
    """A table of image type x split with a column per label, then defect types per split."""
    header = ("image type", "split", *LABEL_ORDER, "total")
    table = [header]
    for image_type, splits in summary["by_image_type_split_label"].items():
        for split, labels in splits.items():
            counts = [labels.get(label, 0) for label in LABEL_ORDER]
            table.append((image_type, split, *map(str, counts), str(sum(counts))))
    totals = [summary["by_label"].get(label, 0) for label in LABEL_ORDER]
    table.append(("all", "", *map(str, totals), str(summary["rows"])))
    widths = [max(len(line[col]) for line in table) for col in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) if col < 2 else cell.rjust(w) for col, (cell, w) in enumerate(zip(line, widths)))
        for line in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for split, types in summary["defect_types_by_split"].items():
        listed = ", ".join(f"{name} {count}" for name, count in types.items())
        lines.append(f"defect types in {split}: {listed}")
    return "\n".join(lines)


def _ordered(counts: Counter[str], order: tuple[str, ...]) -> dict[str, int]:
    return {key: counts[key] for key in order if counts[key]}
