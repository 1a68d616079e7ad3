"""The anomaly stage with a detector: its boxes become regions only where they lie on the
product, and an image type served by a detector alone is scored by its best box."""

import cv2
import numpy as np
import pytest

from lineinspect.services.anomaly.detections import detector_only_result, detector_regions
from lineinspect.services.anomaly.heatmap import HEATMAP_SCALE
from lineinspect.shared.line.decision import DecisionRule
from lineinspect.shared.models.detector.config import DetectorConfig
from lineinspect.shared.models.detector.inference import Detector
from lineinspect.shared.models.detector.metrics import Box
from lineinspect.shared.models.detector.torch_model import DetectorNet


@pytest.fixture(scope="module")
def detector() -> Detector:
    network = DetectorNet(2, width=16, head_convs=1, pretrained=False)
    return Detector(DetectorConfig(input_size=64), network, ["spot", "scratch"], confidence=0.5, version="detector-test")


def product_on_left(height: int = 100, width: int = 100) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    mask[:, :50] = True
    return mask


def test_boxes_off_the_product_or_below_the_confidence_are_not_regions(detector: Detector) -> None:
    boxes = [
        Box(10, 10, 30, 30, "spot", score=0.9),  # on the product
        Box(60, 10, 90, 30, "scratch", score=0.95),  # beside it: clutter
        Box(40, 50, 80, 60, "scratch", score=0.7),  # a quarter on it: kept
        Box(5, 70, 20, 90, "spot", score=0.3),  # below the deployed confidence
        Box(-5.5, 95.2, 12.2, 104.0, "spot", score=0.6),  # runs off the frame: clipped
    ]
    regions = detector_regions(boxes, detector, product_on_left(), (100, 100, 3))
    assert [(r.defect_type, r.x1, r.y1, r.x2, r.y2) for r in regions] == [
        ("spot", 10, 10, 30, 30), ("scratch", 40, 50, 80, 60), ("spot", 0, 95, 13, 100)]
    assert [r.type_confidence for r in regions] == pytest.approx([0.9, 0.7, 0.6])
    assert all(r.area_px == (r.x2 - r.x1) * (r.y2 - r.y1) for r in regions)
    # Without a product mask (whole frame) the clutter box counts.
    assert len(detector_regions(boxes, detector, None, (100, 100, 3))) == 4


def test_an_image_type_decided_by_its_detector_alone_is_scored_by_its_best_box(detector: Detector) -> None:
    mask = product_on_left()
    near_miss = detector_only_result([Box(10, 10, 30, 30, "spot", score=0.47), Box(60, 10, 90, 30, "spot", score=0.99)],
                                     detector, mask, (100, 100, 3), 3.0)
    # The 0.99 box is off the product; the best on it is just below the deployed confidence.
    assert near_miss.score == pytest.approx(0.47) and near_miss.threshold == 0.5 and near_miss.decision == "normal"
    assert near_miss.regions == [] and near_miss.model_version == near_miss.detector_version == "detector-test"
    decision, reasons = DecisionRule(review_band=0.1).decide(near_miss, None)
    assert decision == "review" and "defect confidence 0.94x" in reasons[0]
    heatmap = cv2.imdecode(np.frombuffer(near_miss.heatmap, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert heatmap[20, 20] == round(0.47 / 0.5 / HEATMAP_SCALE * 255) and heatmap[20, 70] == 0 and heatmap[60, 20] == 0

    found = detector_only_result([Box(10, 10, 30, 30, "spot", score=0.8)], detector, mask, (100, 100, 3), 3.0)
    assert found.decision == "anomalous" and found.normalised_score == pytest.approx(1.6)
    decision, reasons = DecisionRule(review_band=0.1).decide(found, None)
    assert decision == "fail" and "spot (0.80) at (10,10)-(30,30)" in reasons[0]
    nothing = detector_only_result([], detector, mask, (100, 100, 3), 3.0)
    assert nothing.score == 0.0 and nothing.decision == "normal"
    assert DecisionRule(review_band=0.1).decide(nothing, None)[0] == "pass"
