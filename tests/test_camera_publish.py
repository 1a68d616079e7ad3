"""A simulated camera that draws its frames before the clock starts publishes exactly what it
would have drawn while publishing, in the same order, onto a real broker."""

import itertools
import uuid

import pytest

from lineinspect.services.camera.publisher import Camera, Publisher, rendered_ahead
from lineinspect.services.camera.sources import synthetic_shots
from lineinspect.shared.config import get_settings
from lineinspect.shared.streaming.clients import make_producer
from lineinspect.shared.streaming.embedded import EmbeddedBroker
from lineinspect.shared.streaming.topics import Topics, ensure_topics

pytestmark = pytest.mark.integration


def _cameras() -> list[Camera]:
    # The second camera has two shots only: it runs out while frames are drawn ahead.
    return [
        Camera("cam-1", synthetic_shots("disc", seed=1, size=64)),
        Camera("cam-2", iter(list(itertools.islice(synthetic_shots("plate", seed=2, size=64), 2)))),
        Camera("cam-3", synthetic_shots("bracket", seed=3, size=64)),
    ]


def test_frames_rendered_ahead_go_out_as_live_ones_would(broker: EmbeddedBroker) -> None:
    settings = get_settings().model_copy(update={"kafka_bootstrap": broker.bootstrap, "topic_prefix": f"c{uuid.uuid4().hex[:8]}."})
    ensure_topics(settings)
    producer = make_producer(settings, "test-camera")
    topic = Topics(settings.topic_prefix).frames
    live: list[tuple[str, bytes]] = []
    ahead: list[tuple[str, bytes, bool]] = []
    Publisher(producer, topic, "line-1").publish(_cameras(), 10, on_frame=lambda f, s: live.append((f.camera_id, f.image)))
    Publisher(producer, topic, "line-1").publish(
        rendered_ahead(_cameras(), 6), 10, on_frame=lambda f, s: ahead.append((f.camera_id, f.image, s.encoded is not None)),
    )
    producer.close()
    assert [(camera, image) for camera, image, _ in ahead] == live
    assert [camera for camera, _ in live].count("cam-2") == 2
    assert [was_ahead for *_, was_ahead in ahead] == [True] * 6 + [False] * 4, "six drawn ahead, the rest while publishing"
