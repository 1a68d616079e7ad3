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
from lineinspect.shared.models.anomaly.regions import DefectRegion, find_regions
from lineinspect.shared.models.anomaly.torch_model import NearestPatchSearch, PatchFeatures, anomaly_maps
from lineinspect.shared.models.backbone import frozen_for_inference, resize_to, to_input_tensor
from lineinspect.shared.models.package import ModelPackage, load_package

UNKNOWN_TYPE = "unknown"
TYPE_NEIGHBOURS = 5


@dataclass(frozen=True)
class AnomalyPrediction:
    score: float  # raw image score: peak of the smoothed patch-distance map inside the product
    threshold: float
    normalised_score: float  # score / threshold
    decision: str  # "normal" | "anomalous"
    heatmap: np.ndarray  # float32 (H, W) at the input image's resolution, normalised (1.0 = threshold)
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


def prepare_image(image: np.ndarray, size: int, product_mask: np.ndarray | None = None) -> np.ndarray:
    """Any-sized BGR image -> (size, size) BGR image the backbone sees. With a product mask,
    the background is painted over first (in training and inference alike), so clutter
    behind the product cannot leak into the product's patch features."""
    if product_mask is not None:
        image = np.where(product_mask[..., None], image, BACKGROUND_FILL)
    return resize_to(image, size, size)


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
    ) -> None:
        self.config = config
        self.search = search
        self.threshold = float(threshold)
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
        settings = dict(manifest.config)
        labels = list(settings.pop("defect_type_labels", []))
        config = AnomalyConfig.model_validate(settings)
        tensors = package.tensors
        search = NearestPatchSearch(
            tensors["memory_bank"], tensors.get("ivf_centroids"), config.ivf_probes, tensors.get("search_projection")
        )
        defect_types = DefectTypes(tensors.get("defect_type_descriptors", torch.zeros(0, 1)), labels)
        return cls(
            config, search, manifest.thresholds["image"], defect_types, manifest.version,
            channel_scales=tensors.get("channel_scales"),
        )

    def with_threshold(self, threshold: float) -> "AnomalyModel":
        clone = object.__new__(AnomalyModel)
        clone.__dict__.update(self.__dict__)
        clone.threshold = float(threshold)
        return clone

    # ---- scoring -------------------------------------------------------------------------
    @torch.inference_mode()
    def patch_features(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """(N, D, h, w) patch features of images already at input size."""
        return self.extractor(to_input_tensor(images))

    @torch.inference_mode()
    def score_maps(
        self, images: Sequence[np.ndarray], product_masks: Sequence[np.ndarray | None]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Smoothed raw anomaly maps at input size (N, S, S) and the patch features."""
        prepared = [prepare_image(image, self.config.input_size, mask) for image, mask in zip(images, product_masks)]
        features = self.patch_features(prepared)
        n, d, h, w = features.shape
        queries = features.permute(0, 2, 3, 1).reshape(-1, d)
        patch_scores = self.search.distances(queries).reshape(n, h, w)
        maps = anomaly_maps(patch_scores, self.config.input_size, self.config.blur_sigma)
        return maps, features

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
            maps, features = self.score_maps(batch, batch_masks)
            for offset, image in enumerate(batch):
                predictions.append(self._finish(image, masks[start + offset], maps[offset], features[offset]))
        return predictions

    def _finish(
        self, image: np.ndarray, product_mask: np.ndarray | None, raw_map: torch.Tensor, features: torch.Tensor
    ) -> AnomalyPrediction:
        height, width = image.shape[:2]
        normalised = raw_map.numpy() * (1.0 / self.threshold)
        heatmap = cv2.resize(normalised, (width, height), interpolation=cv2.INTER_LINEAR)
        if product_mask is not None:
            heatmap = np.where(product_mask, heatmap, np.float32(0.0)).astype(np.float32)
        peak = float(heatmap.max()) if heatmap.size else 0.0
        score = peak * self.threshold
        regions = find_regions(heatmap)
        if regions:
            regions = self._typed(regions, features, normalised, width, height)
        return AnomalyPrediction(
            score=score,
            threshold=self.threshold,
            normalised_score=peak,
            decision="anomalous" if peak >= 1.0 else "normal",
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
