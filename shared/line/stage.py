"""What the three model stages have in common: a frame read off the wire with its image, the
models of the stage routed by image type, and grouping a batch by the model that serves it."""

import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
from kafka.consumer.fetcher import ConsumerRecord

from lineinspect.schemas import Frame
from lineinspect.shared.config import Settings
from lineinspect.shared.line.frames import frame_image, parse_frame
from lineinspect.shared.line.routing import StageModels
from lineinspect.shared.logs import get_logger
from lineinspect.shared.streaming.loop import Outgoing
from lineinspect.shared.streaming.topics import Topics

Model = TypeVar("Model")


@dataclass
class FrameWork(Generic[Model]):
    """One frame in a stage: the event, its decoded image and the model chosen for it."""

    frame: Frame
    image: np.ndarray
    route: str
    model: Model | None  # None: nothing to run (a whole-frame mask is not graded)
    mask: np.ndarray | None = None
    result: Any = None  # what the stage made of it (the reviewer keeps its verdict here)


class FrameStage(Generic[Model]):
    """Base of mask_finder, anomaly and reviewer: decode, route, and hot swap between batches."""

    name = "stage"

    def __init__(self, settings: Settings, topics: Topics, models: StageModels[Model]) -> None:
        self.settings = settings
        self.topics = topics
        self.models = models
        self.log = get_logger(f"lineinspect.services.{self.name}", stage=self.name)

    input_topics: list[str]

    def decode(self, record: ConsumerRecord) -> FrameWork[Model]:
        frame = parse_frame(record.value)
        image = frame_image(frame)
        route, model = self.route_for(frame)
        return FrameWork(frame, image, route, model)

    def route_for(self, frame: Frame) -> tuple[str, Model | None]:
        return self.models.for_image_type(frame.image_type, frame.frame_id)

    def between_batches(self) -> None:
        self.models.between_batches()

    def model_versions(self) -> dict[str, str]:
        return self.models.versions()

    def delivered(self, items: Sequence[FrameWork[Model]], outputs: Sequence[list[Outgoing]]) -> None:
        pass


def by_model(items: Sequence[FrameWork[Model]]) -> Iterator[tuple[Model, list[int]]]:
    """Indices of the batch grouped by the model serving them, so each model runs once."""
    groups: dict[int, list[int]] = defaultdict(list)
    models: dict[int, Model] = {}
    for index, item in enumerate(items):
        if item.model is None:
            continue
        groups[id(item.model)].append(index)
        models[id(item.model)] = item.model
    for key, indices in groups.items():
        yield models[key], indices


class Stopwatch:
    """Milliseconds since creation: a frame's time in a batched stage is the batch's time."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    def ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0
