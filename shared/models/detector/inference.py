"""Running the defect detector: frames in, boxes with defect type and confidence out, at
the frame's resolution."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lineinspect.shared.models.backbone import frozen_for_inference, resize_to, to_input_tensor
from lineinspect.shared.models.detector.boxes import Locations, decode, locations, mirrored, non_maximum_suppression, vote_boxes
from lineinspect.shared.models.detector.config import FCOS_SETTINGS, DetectorConfig
from lineinspect.shared.models.detector.metrics import Box
from lineinspect.shared.models.detector.torch_model import DetectorNet
from lineinspect.shared.models.package import ModelPackage, load_package

INFERENCE_BATCH_SIZE = 8
# Candidates per frame that go into non-maximum suppression, best first.
PRE_NMS_CANDIDATES = 1000


@dataclass(frozen=True)
class RawDetections:
    """One frame's detections in input pixels, best first."""

    boxes: np.ndarray  # (K, 4) float x1, y1, x2, y2
    scores: np.ndarray  # (K,) confidence 0..1
    classes: np.ndarray  # (K,) class index


def confidence_rule(config: DetectorConfig) -> str:
    """How a box's confidence is made: as FCOS ranks its boxes, or the IoU-aware class score alone (GFL)."""
    return "class probability (IoU-aware)" if config.quality_focal else "sqrt(class probability x centre-ness)"


# A side distance's place in (left, top, right, bottom) once the frame is flipped left-right.
LEFT_RIGHT_SWAPPED = [2, 1, 0, 3]


def network_outputs(
    network: torch.nn.Module, batch: torch.Tensor, where: Locations, config: DetectorConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The network's outputs for a batch in float32; with `flip_test`, averaged with those of
    the left-right flipped batch, each brought back to its location (class probabilities and
    centre-ness averaged, left and right distances swapped): two looks at every frame."""
    outputs = tuple(o.float() for o in network(batch))
    if not config.flip_test:
        return outputs
    back = mirrored(where, "x")
    flipped = [o.float()[:, back] for o in network(batch.flip(3))]
    probabilities = (torch.sigmoid(outputs[0]) + torch.sigmoid(flipped[0])) / 2
    centres = (torch.sigmoid(outputs[2]) + torch.sigmoid(flipped[2])) / 2
    distances = (outputs[1] + flipped[1][..., LEFT_RIGHT_SWAPPED]) / 2
    return torch.logit(probabilities, eps=1e-6), distances, torch.logit(centres, eps=1e-6)


def postprocess(
    outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor], where: Locations, config: DetectorConfig
) -> list[RawDetections]:
    """Network outputs of a batch -> per frame boxes after score threshold and NMS (and box
    voting, when the config asks for it), ranked by `confidence_rule`."""
    class_logits, distances, centre_logits = outputs
    if config.quality_focal:
        confidence = torch.sigmoid(class_logits)
    else:
        confidence = (torch.sigmoid(class_logits) * torch.sigmoid(centre_logits)[..., None]).sqrt()
    boxes_all = decode(where.points, distances).clamp(0, config.input_size)
    frames = []
    for scores, boxes in zip(confidence, boxes_all):
        flat = scores.flatten()
        keep = torch.nonzero(flat > config.score_threshold).squeeze(1)
        if keep.numel() > PRE_NMS_CANDIDATES:
            keep = keep[flat[keep].topk(PRE_NMS_CANDIDATES).indices]
        point, cls = keep // scores.shape[1], keep % scores.shape[1]
        candidate_boxes = boxes[point].numpy().astype(np.float64)
        candidate_scores, candidate_classes = flat[keep].numpy(), cls.numpy()
        sizes = candidate_boxes[:, 2:] - candidate_boxes[:, :2]
        solid = (sizes > 0).all(axis=1)
        candidate_boxes, candidate_scores, candidate_classes = candidate_boxes[solid], candidate_scores[solid], candidate_classes[solid]
        kept = non_maximum_suppression(candidate_boxes, candidate_scores, candidate_classes, config.nms_iou, config.max_detections)
        kept_boxes = candidate_boxes[kept]
        if config.box_voting_iou > 0 and len(kept):
            kept_boxes = vote_boxes(candidate_boxes, candidate_scores, candidate_classes, kept, config.box_voting_iou)
        frames.append(RawDetections(kept_boxes, candidate_scores[kept], candidate_classes[kept]))
    return frames


def to_frame_boxes(raw: RawDetections, class_names: Sequence[str], input_size: int, height: int, width: int) -> list[Box]:
    scale = np.array([width, height, width, height], np.float64) / input_size
    return [
        Box(*(float(v) for v in box * scale), defect_type=class_names[int(cls)], score=float(score))
        for box, score, cls in zip(raw.boxes, raw.scores, raw.classes)
    ]


class Detector:
    """A trained detector package, ready to find defects in frames in batches. Boxes below
    `confidence` (the package's deployed threshold) are left out unless asked for."""

    def __init__(
        self,
        config: DetectorConfig,
        network: DetectorNet,
        class_names: Sequence[str],
        confidence: float = 0.3,
        version: str = "unsaved",
        batch_size: int = INFERENCE_BATCH_SIZE,
    ) -> None:
        self.config = config
        self.class_names = list(class_names)
        self.confidence = confidence
        self.version = version
        self.batch_size = batch_size
        self.where = locations(config.input_size, network.strides)
        example = torch.zeros(1, 3, config.input_size, config.input_size)
        self.network = frozen_for_inference(network.eval(), example)

    @classmethod
    def from_package(cls, package: ModelPackage | str | Path) -> "Detector":
        if not isinstance(package, ModelPackage):
            package = load_package(package, expected_kind="detector")
        config = DetectorConfig.model_validate({**FCOS_SETTINGS, **package.manifest.config})
        class_names = package.manifest.preprocessing["classes"]
        network = DetectorNet.for_config(len(class_names), config, pretrained=False)
        network.load_state_dict(package.tensors, strict=True)
        return cls(config, network, class_names, float(package.manifest.thresholds["confidence"]), package.manifest.version)

    def predict(self, images: Sequence[np.ndarray], all_boxes: bool = False) -> list[list[Box]]:
        """Boxes per frame, best first; `all_boxes` keeps those below the deployed confidence
        too (down to the config's score threshold), as mAP needs."""
        size = self.config.input_size
        results: list[list[Box]] = []
        for start in range(0, len(images), self.batch_size):
            batch = images[start : start + self.batch_size]
            frames = to_input_tensor([resize_to(image, size, size) for image in batch])
            with torch.inference_mode():
                outputs = network_outputs(self.network, frames, self.where, self.config)
            for image, raw in zip(batch, postprocess(outputs, self.where, self.config)):
                boxes = to_frame_boxes(raw, self.class_names, size, *image.shape[:2])
                results.append(boxes if all_boxes else [b for b in boxes if (b.score or 0.0) >= self.confidence])
        return results


def load_detector(path: str | Path) -> Detector:
    return Detector.from_package(path)
