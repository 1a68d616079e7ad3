"""Model packages: a directory with `manifest.json` and safetensors weights, shared by every
model kind.

The manifest names the kind and version, records preprocessing, thresholds, the training
data and evaluation figures, and the sha256 of every other file. Loading verifies every
hash before reading a byte of weights and never unpickles. Packages are written to a
temporary sibling directory and renamed into place, so a service watching the path never
sees half a package.
"""

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version as dist_version
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors.torch import load_file, save_file

from lineinspect.shared.errors import ModelPackageError
from lineinspect.shared.logs import get_logger
from lineinspect.shared.models.precision import compute_precision

PACKAGE_FORMAT = "lineinspect-model-package"
FORMAT_VERSION = 1
KNOWN_KINDS = ("anomaly", "mask", "reviewer", "detector")
MANIFEST_NAME = "manifest.json"
WEIGHTS_NAME = "weights.safetensors"


class PackageFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sha256: str
    bytes: int


class PackageManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: str = PACKAGE_FORMAT
    format_version: int = FORMAT_VERSION
    kind: str
    version: str
    created: datetime
    lineinspect_version: str
    input_size: list[int] | None = Field(None, description="[height, width] the model runs at, when fixed")
    preprocessing: dict[str, Any] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    thresholds: dict[str, Any] = Field(default_factory=dict)
    training_data: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, PackageFile]


@dataclass(frozen=True)
class ModelPackage:
    path: Path
    manifest: PackageManifest
    tensors: dict[str, torch.Tensor]

    @property
    def kind(self) -> str:
        return self.manifest.kind

    @property
    def version(self) -> str:
        return self.manifest.version


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _lineinspect_version() -> str:
    try:
        return dist_version("lineinspect")
    except PackageNotFoundError:
        return "unknown"


def save_package(
    out_dir: str | Path,
    kind: str,
    tensors: dict[str, torch.Tensor],
    *,
    extra_files: dict[str, bytes] | None = None,
    **manifest_fields: Any,
) -> ModelPackage:
    """Write a package atomically (replacing `out_dir` if it exists) and return it loaded."""
    if kind not in KNOWN_KINDS:
        raise ModelPackageError(f"unknown model kind {kind!r}; known kinds: {', '.join(KNOWN_KINDS)}")
    out_dir = Path(out_dir).resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(staging / WEIGHTS_NAME))
        for name, data in (extra_files or {}).items():
            if name in (MANIFEST_NAME, WEIGHTS_NAME) or "/" in name or name.startswith("."):
                raise ModelPackageError(f"extra package file name {name!r} is not allowed")
            (staging / name).write_bytes(data)
        files = {
            p.name: PackageFile(sha256=_sha256(p), bytes=p.stat().st_size)
            for p in sorted(staging.iterdir())
        }
        created = datetime.now(UTC)
        # Scores and thresholds depend a little on the number format the networks computed in.
        training_data = {**manifest_fields.pop("training_data", {}), "compute_precision": compute_precision()}
        short_hash = files[WEIGHTS_NAME].sha256[:8]
        manifest = PackageManifest(
            kind=kind,
            version=manifest_fields.pop("version", None) or f"{kind}-{created:%Y%m%d-%H%M%S}-{short_hash}",
            created=created,
            lineinspect_version=_lineinspect_version(),
            files=files,
            training_data=training_data,
            **manifest_fields,
        )
        (staging / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
        os.chmod(staging, 0o755)
        if out_dir.exists():
            # Rename the old package aside first so the path is never empty for long and a
            # failed swap leaves the old package in place.
            retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
            retired.rmdir()
            out_dir.rename(retired)
            staging.rename(out_dir)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return load_package(out_dir, kind)


def read_manifest(path: str | Path) -> PackageManifest:
    """The manifest of a package, validated, without verifying or loading its files."""
    path = Path(path)
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.is_file():
        raise ModelPackageError(
            f"{path}: not a model package (no {MANIFEST_NAME}); train one with `lineinspect train ...`"
        )
    try:
        raw = json.loads(manifest_path.read_text(encoding="utf-8"))
        manifest = PackageManifest.model_validate(raw)
    except (json.JSONDecodeError, ValidationError) as exc:
        raise ModelPackageError(f"{manifest_path}: manifest is not valid ({exc.__class__.__name__}: {exc})") from exc
    if manifest.format != PACKAGE_FORMAT or manifest.format_version > FORMAT_VERSION:
        raise ModelPackageError(
            f"{path}: package format {manifest.format} v{manifest.format_version} is not supported by this "
            f"lineinspect (reads {PACKAGE_FORMAT} v{FORMAT_VERSION}); upgrade lineinspect or retrain"
        )
    if manifest.kind not in KNOWN_KINDS:
        raise ModelPackageError(f"{path}: unknown model kind {manifest.kind!r}; known kinds: {', '.join(KNOWN_KINDS)}")
    return manifest


def verify_files(path: Path, manifest: PackageManifest) -> None:
    """Raise unless every listed file exists with its recorded sha256 and no unlisted file is present."""
    if WEIGHTS_NAME not in manifest.files:
        raise ModelPackageError(f"{path}: manifest lists no {WEIGHTS_NAME}")
    for name, entry in manifest.files.items():
        file_path = path / name
        if not file_path.is_file():
            raise ModelPackageError(f"{path}: package file {name} is missing; the package is incomplete")
        if _sha256(file_path) != entry.sha256:
            raise ModelPackageError(
                f"{path}: {name} does not match its sha256 in {MANIFEST_NAME}; the package was modified "
                "or corrupted; do not use it, retrain or restore it"
            )
    unlisted = sorted(p.name for p in path.iterdir() if p.name != MANIFEST_NAME and p.name not in manifest.files)
    if unlisted:
        raise ModelPackageError(f"{path}: files not listed in {MANIFEST_NAME}: {', '.join(unlisted)}; the package was modified")


def load_package(path: str | Path, expected_kind: str | None = None) -> ModelPackage:
    """Load and verify a package; `expected_kind` refuses a package of another kind."""
    path = Path(path)
    manifest = read_manifest(path)
    if expected_kind is not None and manifest.kind != expected_kind:
        raise ModelPackageError(f"{path}: is a {manifest.kind!r} package, expected {expected_kind!r}")
    verify_files(path, manifest)
    tensors = load_file(str(path / WEIGHTS_NAME))
    calibrated_in, computing_in = manifest.training_data.get("compute_precision"), compute_precision()
    if calibrated_in is not None and calibrated_in != computing_in:
        get_logger(__name__).warning(
            "package calibrated in another number format; its scores can differ slightly from its evaluation",
            package=str(path), calibrated_in=calibrated_in, computing_in=computing_in,
            hint="retrain on this machine, or set LINEINSPECT_COMPUTE_PRECISION to the package's format",
        )
    return ModelPackage(path=path, manifest=manifest, tensors=tensors)


def extra_file(package: ModelPackage, name: str) -> bytes:
    """An extra (already verified) file of a package."""
    if name not in package.manifest.files:
        raise ModelPackageError(f"{package.path}: package has no file {name}")
    return (package.path / name).read_bytes()
