"""Which model package serves which image type, per stage, and switching to new versions
while frames flow.

The packages folder (`LINEINSPECT_PACKAGES`) holds either a `routing.json`:

    {"mask":     {"default": "mask", "tile": "whole_frame"},
     "anomaly":  {"default": "anomaly", "hazelnut": "anomaly-hazelnut"},
     "reviewer": {"default": "reviewer"},
     "detector": {"steel": "detector-neu"}}

(paths relative to the folder; `whole_frame` is the mask of a line without a mask model), or,
without it, one package folder per kind: `mask/`, `anomaly/`, `reviewer/` (and `detector/`),
serving every image type. An image type without a route and without a `default` is refused
to the dead-letter topic ('unknown_model'). Detectors are optional and carried by the
anomaly stage: an image type with one gets its regions (boxes, defect type, confidence) from
it; an image type with a detector and no anomaly model is decided by the detector alone.

Hot swap: a stage checks the routing file and its packages' manifests every
`reload_interval_s`. When either changed, the new set is loaded in a background thread
(hashes verified) and swapped in between two batches, so every frame is scored by one
complete version. The anomaly stage's two sets (anomaly models, detectors) swap together
(`swap_together`): neither swaps while the other is still loading a change. A set that
fails to load is logged and the old one keeps serving. To ship
a version, write the new package to a new folder and then point routing.json at it (write
a temporary file and rename it over routing.json, so a reader never sees half a file).
"""

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from lineinspect.shared.errors import LineinspectError, ModelPackageError
from lineinspect.shared.logs import get_logger
from lineinspect.shared.models.mask.inference import WHOLE_FRAME
from lineinspect.shared.streaming.deadletter import Refused

ROUTING_NAME = "routing.json"
DEFAULT_ROUTE = "default"
ROUTED_KINDS = ("mask", "anomaly", "reviewer", "detector")

Model = TypeVar("Model")


class Routing(BaseModel):
    """Image type (or 'default') -> package folder, per stage kind."""

    model_config = ConfigDict(extra="forbid")

    mask: dict[str, str] = {}
    anomaly: dict[str, str] = {}
    reviewer: dict[str, str] = {}
    detector: dict[str, str] = {}


def read_routing(packages: Path) -> Routing:
    path = packages / ROUTING_NAME
    if path.is_file():
        try:
            return Routing.model_validate_json(path.read_text())
        except ValidationError as exc:
            raise LineinspectError(f"{path}: not a valid routing table ({exc.errors()[0]['msg']}); see docs/line.md") from None
    if not packages.is_dir():
        raise LineinspectError(
            f"packages folder {packages} does not exist; set LINEINSPECT_PACKAGES to a folder with routing.json "
            "or mask/, anomaly/ and reviewer/ (and detector/) package folders"
        )
    return Routing(**{kind: {DEFAULT_ROUTE: kind} for kind in ROUTED_KINDS if (packages / kind).is_dir()})


def write_routing(packages: Path, routing: Routing) -> None:
    """Replace routing.json atomically (a stage never reads half of it)."""
    packages.mkdir(parents=True, exist_ok=True)
    temporary = packages / f".{ROUTING_NAME}.tmp"
    temporary.write_text(json.dumps(routing.model_dump(), indent=2) + "\n")
    temporary.replace(packages / ROUTING_NAME)


def resolve(packages: Path, target: str) -> Path | str:
    return target if target == WHOLE_FRAME else (packages / target)


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


def _package_stat(folder: Path) -> tuple[Any, ...]:
    """Size and time of every file of a package: a package rewritten in place is noticed
    even when its manifest was written before its weights."""
    try:
        names = sorted(p.name for p in folder.iterdir())
    except OSError:
        return ()
    return tuple((name, _stat(folder / name)) for name in names)


@dataclass(frozen=True)
class RoutedModels(Generic[Model]):
    """One loaded model per route of a stage."""

    models: dict[str, Model]
    versions: dict[str, str]

    def route_of(self, image_type: str) -> str | None:
        if image_type in self.models:
            return image_type
        return DEFAULT_ROUTE if DEFAULT_ROUTE in self.models else None


class StageModels(Generic[Model]):
    """The models of one stage kind, by image type, with hot swap between batches."""

    def __init__(
        self,
        kind: str,
        packages: Path,
        load: Callable[[Path | str], Model],
        version_of: Callable[[Model], str],
        reload_interval_s: float = 2.0,
        required: bool = True,
    ) -> None:
        if kind not in ROUTED_KINDS:
            raise ValueError(f"unknown stage kind {kind!r}")
        self.kind = kind
        self.packages = Path(packages)
        self._load = load
        self._version_of = version_of
        self.reload_interval_s = reload_interval_s
        self.log = get_logger("lineinspect.routing", stage_kind=kind)
        self._fingerprint = self._current_fingerprint()
        self.current: RoutedModels[Model] = self._load_all()
        if required and not self.current.models:
            raise LineinspectError(
                f"no {kind} package in {self.packages}: add a '{kind}' folder or a '{kind}' entry in {ROUTING_NAME}"
            )
        self._next_check = time.monotonic() + reload_interval_s
        self._pending: RoutedModels[Model] | None = None
        self._loader: threading.Thread | None = None
        self._failed_fingerprint: Any = None

    # ---- routing -------------------------------------------------------------------------
    def routes(self) -> dict[str, str]:
        return dict(getattr(read_routing(self.packages), self.kind))

    def find(self, image_type: str) -> Model | None:
        """The model serving `image_type`, or None when nothing does (for optional kinds)."""
        current = self.current
        route = current.route_of(image_type)
        return None if route is None else current.models[route]

    def for_image_type(self, image_type: str, frame_id: str | None = None) -> tuple[str, Model]:
        """(route, model) serving `image_type`; refuses an image type nothing serves."""
        current = self.current
        route = current.route_of(image_type)
        if route is None:
            raise Refused(
                "unknown_model",
                f"no {self.kind} model for image type {image_type!r} (routes: {', '.join(sorted(current.models))}); "
                f"add it or a '{DEFAULT_ROUTE}' route to {self.packages / ROUTING_NAME}",
                frame_id,
            )
        return route, current.models[route]

    def versions(self) -> dict[str, str]:
        return dict(self.current.versions)

    # ---- loading and hot swap ---------------------------------------------------------------
    def _current_fingerprint(self) -> Any:
        try:
            routes = self.routes()
        except LineinspectError:
            return ("unreadable", _stat(self.packages / ROUTING_NAME))
        parts = [_stat(self.packages / ROUTING_NAME)]
        for route, target in sorted(routes.items()):
            source = resolve(self.packages, target)
            parts.append((route, target, None if isinstance(source, str) else _package_stat(source)))
        return tuple(parts)

    def _load_all(self) -> RoutedModels[Model]:
        models: dict[str, Model] = {}
        versions: dict[str, str] = {}
        loaded_by_source: dict[str, Model] = {}
        for route, target in self.routes().items():
            source = resolve(self.packages, target)
            key = str(source)
            if key not in loaded_by_source:  # routes sharing a package share one loaded model
                loaded_by_source[key] = self._load(source)
            models[route] = loaded_by_source[key]
            versions[route] = self._version_of(models[route])
        return RoutedModels(models, versions)

    def between_batches(self) -> bool:
        """Swap to a newly loaded set if one is ready; start loading one when files changed.
        Returns True when a swap happened."""
        swapped = self.swap_pending()
        self.reload_if_changed()
        return swapped

    @property
    def loading(self) -> bool:
        return self._loader is not None

    @property
    def check_due(self) -> bool:
        return time.monotonic() >= self._next_check

    def swap_pending(self) -> bool:
        """Serve the set a background load finished, if there is one. Returns True when it swapped."""
        if self._pending is None:
            return False
        old, self.current, self._pending = self.current.versions, self._pending, None
        self.log.info("models swapped", old_versions=old, new_versions=self.current.versions)
        return True

    def reload_if_changed(self, now: bool = False) -> None:
        """When a check is due (or `now`), start loading in the background if the files changed."""
        if self._loader is not None or not (now or self.check_due):
            return
        self._next_check = time.monotonic() + self.reload_interval_s
        fingerprint = self._current_fingerprint()
        if fingerprint != self._fingerprint and fingerprint != self._failed_fingerprint:
            self._loader = threading.Thread(target=self._load_in_background, args=(fingerprint,), daemon=True)
            self._loader.start()

    def _load_in_background(self, fingerprint: Any) -> None:
        try:
            loaded = self._load_all()
        except (LineinspectError, ModelPackageError, OSError, ValueError, KeyError) as exc:
            self.log.error("new models could not be loaded; the current ones keep serving", error=str(exc))
            self._failed_fingerprint = fingerprint
        else:
            self._fingerprint = fingerprint
            self._pending = loaded
        finally:
            self._loader = None

    def wait_for_reload(self, timeout_s: float = 60.0) -> None:
        """Block until a background load in progress has finished (tests, `lineinspect up`)."""
        loader = self._loader
        if loader is not None:
            loader.join(timeout_s)


def swap_together(sets: Sequence[StageModels[Any]]) -> bool:
    """Hot swap the model sets of one stage (read from one routing.json) as one: all check the
    files when any check is due, and none swaps while another is still loading, so no frame
    meets half of a routing change (say a new detector route with the old anomaly route).
    Returns True when a swap happened."""
    swapped = False
    if not any(s.loading for s in sets):
        for models in sets:
            swapped = models.swap_pending() or swapped
    if any(s.check_due for s in sets):
        for models in sets:
            models.reload_if_changed(now=True)
    return swapped
