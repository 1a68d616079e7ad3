"""What a window of live frames is compared with: the drift reference of the anomaly package
that scored them (its training images, `reference_telemetry.jsonl`), or, for a package
without one, the first frames that version scored (said so in every result)."""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lineinspect.shared.errors import LineinspectError
from lineinspect.shared.line.routing import DEFAULT_ROUTE, read_routing, resolve
from lineinspect.shared.logs import get_logger
from lineinspect.shared.models.anomaly.reference import REFERENCE_NAME
from lineinspect.shared.models.package import MANIFEST_NAME
from lineinspect.shared.monitor.store import MonitorStore

PACKAGE = "package"
STREAM_START = "stream start"


@dataclass(frozen=True)
class Reference:
    rows: pd.DataFrame
    source: str  # PACKAGE or STREAM_START
    anomaly_version: str


def read_package_reference(package: Path, image_type: str) -> tuple[str, list[dict[str, Any]]] | None:
    """(version, rows of `image_type`) from a package's reference file, hash checked; None when
    the package has no reference (trained before packages carried one)."""
    manifest = json.loads((package / MANIFEST_NAME).read_text())
    entry = manifest.get("files", {}).get(REFERENCE_NAME)
    if entry is None:
        return None
    data = (package / REFERENCE_NAME).read_bytes()
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise LineinspectError(f"{package / REFERENCE_NAME}: sha256 differs from the package manifest; the package is damaged")
    rows = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
    own = [row for row in rows if row.get("image_type") == image_type]
    # A default package trained on other types: its whole reference is the best there is.
    return manifest["version"], own or rows


class References:
    def __init__(self, packages: Path, store: MonitorStore, fallback_rows: int) -> None:
        self.packages = Path(packages)
        self.store = store
        self.fallback_rows = fallback_rows
        self._cache: dict[tuple[str, str], Reference] = {}
        self.log = get_logger("lineinspect.monitor.reference")

    def _package_for(self, image_type: str) -> Path | None:
        try:
            routes = read_routing(self.packages).anomaly
        except LineinspectError:
            return None
        target = routes.get(image_type, routes.get(DEFAULT_ROUTE))
        source = None if target is None else resolve(self.packages, target)
        return source if isinstance(source, Path) and (source / MANIFEST_NAME).is_file() else None

    def for_window(self, image_type: str, anomaly_version: str) -> Reference | None:
        """The reference for frames of `image_type` scored by `anomaly_version`; None while a
        package without a reference has not yet scored `fallback_rows` frames."""
        key = (image_type, anomaly_version)
        if key in self._cache:
            return self._cache[key]
        package = self._package_for(image_type)
        found = read_package_reference(package, image_type) if package is not None else None
        if found is not None and found[0] == anomaly_version:
            reference = Reference(pd.DataFrame(found[1]), PACKAGE, anomaly_version)
        else:
            rows = self.store.first_frames(image_type, anomaly_version, self.fallback_rows)
            if len(rows) < self.fallback_rows:
                return None
            self.log.warning(
                "no drift reference in the model package: using the first frames it scored",
                image_type=image_type, anomaly_version=anomaly_version, rows=len(rows),
            )
            reference = Reference(pd.DataFrame(rows), STREAM_START, anomaly_version)
        self._cache[key] = reference
        return reference
