"""Running a trained anomaly model: images (and product masks) in, scores, decisions,
heatmaps and typed defect regions out. The service and `lineinspect evaluate` both use
`AnomalyModel.predict`, so they give the same numbers for the same package and image."""

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from lineinspect.shared.models.anomaly.config import AnomalyConfig
from lineinspect.shared.models.anomaly.probe import DefectProbe
from lineinspect.shared.models.anomaly.regions import DefectRegion, find_regions
from lineinspect.shared.models.anomaly.torch_model import NearestPatchSearch, PatchFeatures, anomaly_maps, level_edges
from lineinspect.shared.models.backbone import frozen_for_inference, resize_to, to_input_tensor
from lineinspect.shared.models.package import ModelPackage, load_package

UNKNOWN_TYPE = "unknown"
TYPE_NEIGHBOURS = 5
# What packages saved before these settings existed were built and calibrated with:
# square inputs (before `resize`), no exact re-search (before `exact_rerank`).
OLDER_PACKAGE_SETTINGS = {"resize": "square", "exact_rerank": 0}


@dataclass(frozen=True)
class AnomalyPrediction:
    score: float  # raw image score: peak of the smoothed patch-distance map inside the product
    threshold: float
    normalised_score: float  # score / threshold
    decision: str  # "normal" | "anomalous"
    # float32 (H, W) at the input image's resolution, normalised (1.0 = threshold), raised
    # further by the package's defect probe where patches look like labelled defects
    heatmap: np.ndarray
    regions: list[DefectRegion]

    @property
    def is_anomalous(self) -> bool:
        return self.decision == "anomalous"


@dataclass(frozen=True)
class DefectTypes:
    """Labelled defect descriptors (unit vectors) the regions are typed by, nearest first."""

    descriptors: torch.Tensor  # (K, D)
    labels: list[str]

    def classify(self, descriptor: torch.Tensor) -> tuple[str, float | None]:
        if not self.labels:
            return UNKNOWN_TYPE, None
        similarity = self.descriptors @ torch.nn.functional.normalize(descriptor, dim=0)
        nearest = [self.labels[i] for i in similarity.topk(min(TYPE_NEIGHBOURS, len(self.labels))).indices.tolist()]
        # Majority of the nearest labelled defects; a tie goes to the type seen nearest.
        label = max(dict.fromkeys(nearest), key=lambda name: (nearest.count(name), -nearest.index(name)))
        return label, nearest.count(label) / len(nearest)


# The ImageNet mean colour (BGR): zero after normalisation, so masked-out background carries
# no signal into the features of the product next to it.
BACKGROUND_FILL = np.array([104, 116, 124], np.uint8)


@dataclass(frozen=True)
class ReferenceLevels:
    """How high a normal image's anomaly map goes: the 0.99 quantiles, over normal images the
    bank did not see, of the map's peak and of its mean over the product.

    The image score is the larger of peak / peak level (a local defect) and mean / mean level
    (the whole product looks off: uneven finish, wrong lighting, a foreign product); each
    term is 1.0 for a normal image at the 99th percentile."""

    peak: float = 1.0
    mean: float = math.inf  # inf: the mean term is off

    def score(self, peak: float, mean: float) -> float:
        return max(peak / self.peak, mean / self.mean)


def whole_product_region(product_mask: np.ndarray | None, width: int, height: int, score: float) -> DefectRegion:
    if product_mask is None or not product_mask.any():
        return DefectRegion(x1=0, y1=0, x2=width, y2=height, score=score, area_px=width * height)
    ys, xs = np.nonzero(product_mask)
    return DefectRegion(
        x1=int(xs.min()), y1=int(ys.min()), x2=int(xs.max()) + 1, y2=int(ys.max()) + 1,
        score=score, area_px=int(product_mask.sum()),
    )


def prepare_image(image: np.ndarray, config: AnomalyConfig, product_mask: np.ndarray | None = None) -> np.ndarray:
    """Any-sized BGR image -> the BGR image the backbone sees (`AnomalyConfig.input_shape`).
    With a product mask, the background is painted over first (in training and inference
    alike), so clutter behind the product cannot leak into the product's patch features."""
    if product_mask is not None:
        image = np.where(product_mask[..., None], image, BACKGROUND_FILL)
    return resize_to(image, *config.input_shape(*image.shape[:2]))


def indices_by_shape(arrays: Sequence[np.ndarray | torch.Tensor]) -> list[list[int]]:
    """Indices of the arrays grouped by shape, groups in order of first appearance."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, array in enumerate(arrays):
        groups.setdefault(tuple(array.shape), []).append(index)
    return list(groups.values())


# Images per backbone call. Bigger batches are slower per image on a CPU once the early
# layers' activations (112 x 112 x 32 per image at 224 px) outgrow the caches: per image,
# 1 thread: 20 ms in batches of 1-2, 26 ms of 4, 34 ms of 8; 2 threads: 11.5 / 12 / 18.5 ms.
BACKBONE_CHUNK = 2


def batch_by_shape(
    extractor: torch.nn.Module, prepared: Sequence[np.ndarray], chunk: int = BACKBONE_CHUNK
) -> list[torch.Tensor]:
    """Patch features (D, h, w) of each prepared image, in order. Images of one shape go
    through the backbone together, `chunk` at a time; a line's frames usually share one
    shape, while a data set of cut parts can have many."""
    out: list[torch.Tensor] = [torch.empty(0)] * len(prepared)
    with torch.inference_mode():
        for members in indices_by_shape(prepared):
            for start in range(0, len(members), chunk):
                part = members[start : start + chunk]
                features = extractor(to_input_tensor([prepared[i] for i in part]))
                for index, feature in zip(part, features):
                    out[index] = feature
    return out


def region_descriptor(features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean patch feature: (D, h, w), (h, w) -> (D,)."""
    total = weights.sum()
    if total <= 0:
        return features.mean(dim=(1, 2))
    return (features * weights[None]).sum(dim=(1, 2)) / total


class AnomalyModel:
    """A memory bank, its search, the threshold and the defect-type descriptors, ready to score."""

    def __init__(
        self,
        config: AnomalyConfig,
        search: NearestPatchSearch,
        threshold: float,
        defect_types: DefectTypes | None = None,
        version: str = "unsaved",
        extractor: torch.nn.Module | None = None,
        channel_scales: torch.Tensor | None = None,
        levels: "ReferenceLevels | None" = None,
        edge_profile: torch.Tensor | None = None,
        defect_probe: DefectProbe | None = None,
    ) -> None:
        self.config = config
        self.edge_profile = edge_profile  # see torch_model.edge_profile; None: distances as they are
        self.defect_probe = defect_probe  # see probe.py; None: distances as they are
        self.search = search
        self.threshold = float(threshold)
        self.levels = levels or ReferenceLevels()
        self.defect_types = defect_types or DefectTypes(torch.zeros(0, 1), [])
        self.version = version
        if extractor is None:  # callers that already froze one (training) pass it in
            example = torch.zeros(1, 3, config.input_size, config.input_size)
            features = PatchFeatures(config.taps, config.aggregate)
            if channel_scales is not None:
                features.channel_scales.copy_(channel_scales)
            extractor = frozen_for_inference(features, example)
        self.extractor = extractor

    # ---- loading -------------------------------------------------------------------------
    @classmethod
    def from_package(cls, package: ModelPackage | str | Path) -> "AnomalyModel":
        if not isinstance(package, ModelPackage):
            package = load_package(package, expected_kind="anomaly")
        manifest = package.manifest
        settings = {**OLDER_PACKAGE_SETTINGS, **manifest.config}
        labels = list(settings.pop("defect_type_labels", []))
        config = AnomalyConfig.model_validate(settings)
        tensors = package.tensors
        search = NearestPatchSearch(
            tensors["memory_bank"], tensors.get("ivf_centroids"), config.ivf_probes, tensors.get("search_projection")
        )
        defect_types = DefectTypes(tensors.get("defect_type_descriptors", torch.zeros(0, 1)), labels)
        thresholds = manifest.thresholds
        return cls(
            config, search, thresholds["image"], defect_types, manifest.version,
            channel_scales=tensors.get("channel_scales"),
            levels=ReferenceLevels(thresholds["peak_level"], thresholds["mean_level"]),
            edge_profile=tensors.get("edge_profile"),
            defect_probe=DefectProbe.from_tensors(tensors, config.probe_gain),
        )

    def calibrated(self, threshold: float, levels: "ReferenceLevels") -> "AnomalyModel":
        """The same model with another threshold and reference levels."""
        return self._replaced(threshold=float(threshold), levels=levels)

    def with_probe(self, probe: DefectProbe | None) -> "AnomalyModel":
        """The same model with another defect probe, or none: what its heatmaps owe to the
        probe (scores and decisions never depend on it)."""
        return self._replaced(defect_probe=probe)

    def _replaced(self, **attributes: object) -> "AnomalyModel":
        clone = object.__new__(AnomalyModel)
        clone.__dict__.update(self.__dict__, **attributes)
        return clone

    # ---- scoring -------------------------------------------------------------------------
    def patch_features(self, prepared: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Patch features (D, h, w) of each image already prepared by `prepare_image`."""
        return batch_by_shape(self.extractor, prepared)

    @torch.inference_mode()
    def patch_distances(self, prepared: Sequence[np.ndarray]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Distance of each patch to the memory bank (h, w), before the edge profile, and the
        patch features (D, h, w), one of each per image already prepared by `prepare_image`."""
        features = self.patch_features(prepared)
        queries = torch.cat([f.flatten(1).T for f in features])
        sizes = [f.shape[1] * f.shape[2] for f in features]
        distances = self.search.distances(queries)
        if self.config.exact_rerank and self.search.centroids is not None:
            # Each image's farthest patches (as levelled for the score) searched again exactly:
            # chosen per image, so an image scores the same whatever batch it comes in.
            chosen, start = [], 0
            for feature, size in zip(features, sizes):
                levelled = level_edges(distances[start : start + size].reshape(feature.shape[1:]), self.edge_profile)
                chosen.append(start + levelled.flatten().topk(min(self.config.exact_rerank, size)).indices)
                start += size
            rerank = torch.cat(chosen)
            distances[rerank] = torch.minimum(distances[rerank], self.search.exact_distances(queries[rerank]))
        return [d.reshape(f.shape[1:]) for d, f in zip(distances.split(sizes), features)], features

    @torch.inference_mode()
    def score_maps(
        self, images: Sequence[np.ndarray], product_masks: Sequence[np.ndarray | None], with_probe: bool = False
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """Per image, at the backbone's input size (H, W): the smoothed raw anomaly map (what
        the image score is made of), the map the heatmap shows (the raw map raised by the
        defect probe when asked for and the model has one, else the raw map itself), and the
        patch features (D, h, w)."""
        prepared = [prepare_image(image, self.config, mask) for image, mask in zip(images, product_masks)]
        grids, features = self.patch_distances(prepared)
        raw_maps, shown_maps = [], []
        for grid, feature, image in zip(grids, features, prepared):
            levelled = level_edges(grid, self.edge_profile)
            raw_maps.append(anomaly_maps(levelled[None], image.shape[:2], self.config.blur_sigma)[0])
            if with_probe and self.defect_probe is not None:
                raised = self.defect_probe.raise_distances(levelled, feature)
                shown_maps.append(anomaly_maps(raised[None], image.shape[:2], self.config.blur_sigma)[0])
            else:
                shown_maps.append(raw_maps[-1])
        return raw_maps, shown_maps, features

    def predict(
        self, images: Sequence[np.ndarray], product_masks: Sequence[np.ndarray | None] | None = None
    ) -> list[AnomalyPrediction]:
        """Score images (any size, BGR uint8); a product mask (bool, image size) limits
        scoring and regions to the product."""
        masks = list(product_masks) if product_masks is not None else [None] * len(images)
        if len(masks) != len(images):
            raise ValueError(f"{len(images)} images but {len(masks)} product masks")
        predictions: list[AnomalyPrediction] = []
        for start in range(0, len(images), self.config.batch_size):
            batch = images[start : start + self.config.batch_size]
            batch_masks = masks[start : start + self.config.batch_size]
            for image, mask in zip(batch, batch_masks):
                if mask is not None and mask.shape[:2] != image.shape[:2]:
                    raise ValueError(
                        f"product mask is {mask.shape[1]}x{mask.shape[0]} but the image is {image.shape[1]}x{image.shape[0]}"
                    )
            raw_maps, shown_maps, features = self.score_maps(batch, batch_masks, with_probe=True)
            for offset, image in enumerate(batch):
                predictions.append(
                    self._finish(image, masks[start + offset], raw_maps[offset], shown_maps[offset], features[offset])
                )
        return predictions

    def measure(
        self, images: Sequence[np.ndarray], product_masks: Sequence[np.ndarray | None] | None = None
    ) -> list[tuple[float, float]]:
        """(peak, mean) of each image's raw anomaly map inside the product: what the image
        score is made of, before the reference levels and threshold apply (training uses it)."""
        masks = list(product_masks) if product_masks is not None else [None] * len(images)
        out: list[tuple[float, float]] = []
        for start in range(0, len(images), self.config.batch_size):
            batch, batch_masks = images[start : start + self.config.batch_size], masks[start : start + self.config.batch_size]
            maps, _, _ = self.score_maps(batch, batch_masks)
            for image, mask, raw_map in zip(batch, batch_masks, maps):
                out.append(self._measure(image, mask, raw_map)[:2])
        return out

    @staticmethod
    def _at_image_size(image: np.ndarray, product_mask: np.ndarray | None, small_map: torch.Tensor) -> np.ndarray:
        """A map at the backbone's input size -> the image's size, 0 outside the product."""
        height, width = image.shape[:2]
        full = cv2.resize(small_map.numpy(), (width, height), interpolation=cv2.INTER_LINEAR)
        if product_mask is None:
            return full
        return np.where(product_mask, full, np.float32(0.0)).astype(np.float32)

    @classmethod
    def _measure(cls, image: np.ndarray, product_mask: np.ndarray | None, raw_map: torch.Tensor) -> tuple[float, float, np.ndarray]:
        full = cls._at_image_size(image, product_mask, raw_map)
        if product_mask is None:
            return float(full.max()), float(full.mean()), full
        if not product_mask.any():
            return 0.0, 0.0, full
        return float(full.max()), float(full[product_mask].mean()), full

    def _finish(
        self,
        image: np.ndarray,
        product_mask: np.ndarray | None,
        raw_map: torch.Tensor,
        shown_map: torch.Tensor,
        features: torch.Tensor,
    ) -> AnomalyPrediction:
        height, width = image.shape[:2]
        peak, mean, full = self._measure(image, product_mask, raw_map)
        score = self.levels.score(peak, mean)
        normalised_score = score / self.threshold
        anomalous = normalised_score >= 1.0
        # The heatmap is scaled so 1.0 is where a local peak alone makes the image anomalous
        # (on the raw map; a defect probe raises it further where patches look like labelled defects).
        pixel_threshold = self.levels.peak * self.threshold
        if shown_map is not raw_map:
            full = self._at_image_size(image, product_mask, shown_map)
        heatmap = (full * (1.0 / pixel_threshold)).astype(np.float32)
        # Regions only where the image is anomalous: without a probe, a heatmap above 1.0
        # already means it is; a probe's raised heatmap on a normal image names no defect.
        regions = find_regions(heatmap) if anomalous else []
        if anomalous and not regions:
            # Anomalous as a whole (the product's overall level, not one spot): one region
            # over the product, so every anomalous image names where to look.
            regions = [whole_product_region(product_mask, width, height, normalised_score)]
        if regions:
            regions = self._typed(regions, features, shown_map.numpy() * (1.0 / pixel_threshold), width, height)
        return AnomalyPrediction(
            score=score,
            threshold=self.threshold,
            normalised_score=normalised_score,
            decision="anomalous" if anomalous else "normal",
            heatmap=heatmap,
            regions=regions,
        )

    def _typed(
        self, regions: list[DefectRegion], features: torch.Tensor, normalised: np.ndarray, width: int, height: int
    ) -> list[DefectRegion]:
        if not self.defect_types.labels:
            return regions
        _, grid_h, grid_w = features.shape
        grid_map = torch.from_numpy(cv2.resize(normalised, (grid_w, grid_h), interpolation=cv2.INTER_AREA))
        typed = []
        for region in regions:
            gx1, gx2 = int(region.x1 * grid_w / width), max(int(math.ceil(region.x2 * grid_w / width)), 1)
            gy1, gy2 = int(region.y1 * grid_h / height), max(int(math.ceil(region.y2 * grid_h / height)), 1)
            weights = torch.zeros(grid_h, grid_w)
            weights[gy1:gy2, gx1:gx2] = grid_map[gy1:gy2, gx1:gx2].clamp_min(0)
            label, confidence = self.defect_types.classify(region_descriptor(features, weights))
            typed.append(replace(region, defect_type=label, type_confidence=confidence))
        return typed
