"""anomaly: masked frames in (topic `masked`), scored frames out (topic `scored`).

The anomaly model of the frame's image type scores only inside the product mask; the frame
gains the score, threshold, decision, heatmap and every defect region as a box. An image type
may also have a detector (routing.json `detector`): then the regions are its boxes, with
defect type and confidence; an image type with a detector and no anomaly model is decided by
the detector alone (services/anomaly/detections.py)."""

from collections.abc import Sequence
from dataclasses import dataclass

import redis
from kafka.consumer.fetcher import ConsumerRecord

from lineinspect.schemas import AnomalyResult, Frame, Region
from lineinspect.services.anomaly.detections import detector_only_result, detector_regions
from lineinspect.services.anomaly.heatmap import HEATMAP_SCALE, heatmap_png
from lineinspect.shared.config import Settings
from lineinspect.shared.line.frames import frame_json, frame_mask
from lineinspect.shared.line.routing import StageModels, swap_together
from lineinspect.shared.line.stage import FrameStage, FrameWork, Stopwatch, by_model
from lineinspect.shared.models.anomaly.inference import AnomalyModel, AnomalyPrediction
from lineinspect.shared.models.detector.inference import Detector
from lineinspect.shared.models.detector.metrics import Box
from lineinspect.shared.streaming.deadletter import Refused
from lineinspect.shared.streaming.loop import Outgoing
from lineinspect.shared.streaming.topics import Topics

def anomaly_result(prediction: AnomalyPrediction, version: str, latency_ms: float) -> AnomalyResult:
    return AnomalyResult(
        score=prediction.score,
        threshold=prediction.threshold,
        normalised_score=prediction.normalised_score,
        decision=prediction.decision,
        heatmap=heatmap_png(prediction.heatmap),
        heatmap_scale=HEATMAP_SCALE,
        regions=[
            Region(
                x1=r.x1, y1=r.y1, x2=r.x2, y2=r.y2, score=r.score, area_px=r.area_px,
                defect_type=r.defect_type, type_confidence=r.type_confidence,
            )
            for r in prediction.regions
        ],
        model_version=version,
        latency_ms=latency_ms,
    )


@dataclass
class ScoredWork(FrameWork[AnomalyModel]):
    detector: Detector | None = None


class AnomalyStage(FrameStage[AnomalyModel]):
    name = "anomaly"

    def __init__(
        self, settings: Settings, topics: Topics, models: StageModels[AnomalyModel], detectors: StageModels[Detector] | None = None
    ) -> None:
        super().__init__(settings, topics, models)
        self.detectors = detectors
        self.input_topics = [topics.masked]

    def decode(self, record: ConsumerRecord) -> ScoredWork:
        item = super().decode(record)
        detector = self.detectors.find(item.frame.image_type) if self.detectors is not None else None
        work = ScoredWork(item.frame, item.image, item.route, item.model, detector=detector)
        work.mask = frame_mask(work.frame, work.image)
        return work

    def route_for(self, frame: Frame) -> tuple[str, AnomalyModel | None]:
        image_type = frame.image_type
        if self.detectors is not None and self.models.find(image_type) is None and self.detectors.find(image_type) is not None:
            return "detector", None  # decided by the detector alone
        return super().route_for(frame)

    def between_batches(self) -> None:
        swap_together([self.models] if self.detectors is None else [self.models, self.detectors])

    def model_versions(self) -> dict[str, str]:
        versions = super().model_versions()
        if self.detectors is not None:
            versions.update({f"detector:{route}": version for route, version in self.detectors.versions().items()})
        return versions

    def process(self, items: Sequence[ScoredWork]) -> list[list[Outgoing] | Refused]:
        clock = Stopwatch()
        predictions: dict[int, AnomalyPrediction] = {}
        for model, indices in by_model(items):
            images = [items[i].image for i in indices]
            masks = [items[i].mask for i in indices]
            for index, prediction in zip(indices, model.predict(images, masks)):
                predictions[index] = prediction
        boxes: dict[int, list[Box]] = {}
        for detector, indices in by_detector(items):
            for index, found in zip(indices, detector.predict([items[i].image for i in indices], all_boxes=True)):
                boxes[index] = found
        latency = clock.ms()
        outputs: list[list[Outgoing] | Refused] = []
        for index, item in enumerate(items):
            detector = item.detector
            if item.model is None:
                assert detector is not None
                result = detector_only_result(boxes[index], detector, item.mask, item.image.shape, latency)
            else:
                result = anomaly_result(predictions[index], item.model.version, latency)
                if detector is not None:
                    result = result.model_copy(update={
                        "regions": detector_regions(boxes[index], detector, item.mask, item.image.shape),
                        "detector_version": detector.version,
                    })
            item.frame.anomaly = result
            outputs.append([Outgoing(self.topics.scored, item.frame.camera_id.encode(), frame_json(item.frame))])
        return outputs


def by_detector(items: Sequence[ScoredWork]) -> list[tuple[Detector, list[int]]]:
    """Indices of the batch grouped by the detector serving them."""
    groups: dict[int, tuple[Detector, list[int]]] = {}
    for index, item in enumerate(items):
        if item.detector is not None:
            groups.setdefault(id(item.detector), (item.detector, []))[1].append(index)
    return list(groups.values())


def build(settings: Settings, topics: Topics, redis_client: redis.Redis) -> AnomalyStage:
    detectors = StageModels(
        "detector", settings.packages, Detector.from_package, lambda m: m.version, settings.reload_interval_s, required=False
    )
    models = StageModels(
        "anomaly", settings.packages, AnomalyModel.from_package, lambda m: m.version, settings.reload_interval_s,
        required=not detectors.current.models,
    )
    return AnomalyStage(settings, topics, models, detectors)
