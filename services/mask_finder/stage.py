"""mask_finder: frames in (topic `frames`), each with a product mask out (topic `masked`).

The mask model is routed by image type; `whole_frame` routes give the whole image."""

from collections.abc import Sequence

import redis

from lineinspect.schemas import MaskResult
from lineinspect.shared.config import Settings
from lineinspect.shared.images import encode_png
from lineinspect.shared.line.frames import frame_json
from lineinspect.shared.line.routing import StageModels
from lineinspect.shared.line.stage import FrameStage, FrameWork, Stopwatch, by_model
from lineinspect.shared.models.mask.inference import MaskFinder, WholeFrame, load_mask_finder
from lineinspect.shared.streaming.deadletter import Refused
from lineinspect.shared.streaming.loop import Outgoing
from lineinspect.shared.streaming.topics import Topics

Finder = MaskFinder | WholeFrame


class MaskFinderStage(FrameStage[Finder]):
    name = "mask_finder"

    def __init__(self, settings: Settings, topics: Topics, models: StageModels[Finder]) -> None:
        super().__init__(settings, topics, models)
        self.input_topics = [topics.frames]

    def process(self, items: Sequence[FrameWork[Finder]]) -> list[list[Outgoing] | Refused]:
        clock = Stopwatch()
        predictions: dict[int, object] = {}
        for finder, indices in by_model(items):
            for index, prediction in zip(indices, finder.predict([items[i].image for i in indices])):
                predictions[index] = prediction
        latency = clock.ms()
        outputs: list[list[Outgoing] | Refused] = []
        for index, item in enumerate(items):
            prediction = predictions[index]
            item.frame.mask = MaskResult(
                mask=encode_png(prediction.mask),
                mode=prediction.mode,
                area_fraction=prediction.area_fraction,
                area_px=prediction.area_px,
                confidence=min(1.0, max(0.0, prediction.confidence)),
                model_version=item.model.version,
                latency_ms=latency,
            )
            key = item.frame.camera_id.encode()
            outputs.append([Outgoing(self.topics.masked, key, frame_json(item.frame))])
        return outputs


def build(settings: Settings, topics: Topics, redis_client: redis.Redis) -> MaskFinderStage:
    models = StageModels("mask", settings.packages, load_mask_finder, lambda m: m.version, settings.reload_interval_s)
    return MaskFinderStage(settings, topics, models)
