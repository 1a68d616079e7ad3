"""anomaly: masked frames in (topic `masked`), scored frames out (topic `scored`).

The anomaly model of the frame's image type scores only inside the product mask; the frame
gains the score, threshold, decision, heatmap and every defect region as a box."""

from collections.abc import Sequence

import numpy as np
import redis
from kafka.consumer.fetcher import ConsumerRecord

from lineinspect.schemas import AnomalyResult, Region
from lineinspect.shared.config import Settings
from lineinspect.shared.images import encode_png
from lineinspect.shared.line.frames import frame_json, frame_mask
from lineinspect.shared.line.routing import StageModels
from lineinspect.shared.line.stage import FrameStage, FrameWork, Stopwatch, by_model
from lineinspect.shared.models.anomaly.inference import AnomalyModel, AnomalyPrediction
from lineinspect.shared.streaming.deadletter import Refused
from lineinspect.shared.streaming.loop import Outgoing
from lineinspect.shared.streaming.topics import Topics

HEATMAP_SCALE = 2.0  # normalised score at grey level 255: the threshold sits at ~128


def heatmap_png(heatmap: np.ndarray, scale: float = HEATMAP_SCALE) -> bytes:
    """The contract's 8-bit heatmap: pixel = round(clip(n / scale, 0, 1) * 255)."""
    grey = np.rint(np.clip(heatmap / scale, 0.0, 1.0) * 255.0).astype(np.uint8)
    return encode_png(grey)


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


class AnomalyStage(FrameStage[AnomalyModel]):
    name = "anomaly"

    def __init__(self, settings: Settings, topics: Topics, models: StageModels[AnomalyModel]) -> None:
        super().__init__(settings, topics, models)
        self.input_topics = [topics.masked]

    def decode(self, record: ConsumerRecord) -> FrameWork[AnomalyModel]:
        item = super().decode(record)
        item.mask = frame_mask(item.frame, item.image)
        return item

    def process(self, items: Sequence[FrameWork[AnomalyModel]]) -> list[list[Outgoing] | Refused]:
        clock = Stopwatch()
        predictions: dict[int, AnomalyPrediction] = {}
        for model, indices in by_model(items):
            images = [items[i].image for i in indices]
            masks = [items[i].mask for i in indices]
            for index, prediction in zip(indices, model.predict(images, masks)):
                predictions[index] = prediction
        latency = clock.ms()
        outputs: list[list[Outgoing] | Refused] = []
        for index, item in enumerate(items):
            item.frame.anomaly = anomaly_result(predictions[index], item.model.version, latency)
            outputs.append([Outgoing(self.topics.scored, item.frame.camera_id.encode(), frame_json(item.frame))])
        return outputs


def build(settings: Settings, topics: Topics, redis_client: redis.Redis) -> AnomalyStage:
    models = StageModels(
        "anomaly", settings.packages, AnomalyModel.from_package, lambda m: m.version, settings.reload_interval_s
    )
    return AnomalyStage(settings, topics, models)
