"""The defect-pixel probe: where labelled anomalies come with defect masks, a linear classifier
on the patch features learns which patches are defect, and its probability raises each patch
distance of the heatmap (distance x (1 + gain x p)); image scores do not use it.

Nearest-patch distances see a patch against normal patches only, so a defect whose patches
each look like some normal surface (magnetic tiles' uneven bands: a quarter of a tile finished
differently, every patch of it ordinary on its own) lights up the whole tile at best. The
defect masks say which patches of a defective frame are the defect and which are not; a
linear direction in the same features that separates them carries to frames it has not seen.
Nothing here reads files."""

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

# A grid cell counts as defect from this share of defect pixels on (a thin crack covers a
# quarter of an 8-pixel cell); as clean when neither it nor a neighbour holds any. Cells in
# between are left out of the fit.
DEFECT_SHARE = 0.25
MAX_FIT_PATCHES = 120_000


@dataclass(frozen=True)
class DefectProbe:
    """Logistic regression on patch features, standardisation folded into the weights."""

    weights: torch.Tensor  # (D,)
    bias: float
    gain: float

    def probabilities(self, features: torch.Tensor) -> torch.Tensor:
        """(D, h, w) patch features -> (h, w) probability that each patch is defect."""
        return torch.sigmoid(torch.einsum("dhw,d->hw", features.float(), self.weights) + self.bias)

    def raise_distances(self, distances: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """(h, w) patch distances x (1 + gain x p)."""
        return distances * (1.0 + self.gain * self.probabilities(features))

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"defect_probe_weights": self.weights, "defect_probe_bias": torch.tensor([self.bias])}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], gain: float) -> "DefectProbe | None":
        if "defect_probe_weights" not in tensors:
            return None
        return cls(tensors["defect_probe_weights"].float(), float(tensors["defect_probe_bias"][0]), gain)


@dataclass(frozen=True)
class LabelledPatches:
    """One image's patch features (P, D) and whether each is defect (P,), outline cells left out."""

    features: np.ndarray
    is_defect: np.ndarray


def labelled_patches(features: torch.Tensor, defect_share: np.ndarray, inside: np.ndarray | None = None) -> LabelledPatches:
    """(D, h, w) features and the (h, w) share of each cell covered by the defect mask (all 0
    for a normal image); `inside` (h, w) bool limits it to the product."""
    d = features.shape[0]
    flat = features.float().reshape(d, -1).T.numpy()
    near_defect = cv2.dilate((defect_share > 0).astype(np.uint8), np.ones((3, 3), np.uint8)).reshape(-1) > 0
    share = defect_share.reshape(-1)
    keep = (share >= DEFECT_SHARE) | ~near_defect
    if inside is not None:
        keep &= inside.reshape(-1)
    return LabelledPatches(flat[keep], share[keep] >= DEFECT_SHARE)


def fit_probe(images: Sequence[LabelledPatches], gain: float, strength: float, seed: int = 0) -> DefectProbe:
    """Fit on the patches of these images (a seeded subsample of at most MAX_FIT_PATCHES).
    `strength` is the inverse L2 penalty on standardised features: small = a smooth direction
    that holds on frames not seen."""
    features = np.concatenate([image.features for image in images])
    is_defect = np.concatenate([image.is_defect for image in images])
    if not 0 < is_defect.sum() < len(is_defect):
        raise ValueError("the probe needs both defect and clean patches")
    if len(features) > MAX_FIT_PATCHES:
        chosen = np.random.default_rng(seed).choice(len(features), MAX_FIT_PATCHES, replace=False)
        features, is_defect = features[chosen], is_defect[chosen]
    scaler = StandardScaler().fit(features)
    classifier = LogisticRegression(C=strength, max_iter=1000).fit(scaler.transform(features), is_defect)
    weights = classifier.coef_[0] / scaler.scale_
    bias = float(classifier.intercept_[0] - (scaler.mean_ * weights).sum())
    return DefectProbe(torch.from_numpy(weights.astype(np.float32)), bias, gain)
