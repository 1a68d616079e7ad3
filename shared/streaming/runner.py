"""Starting one stage: settings and clients at the edge, the stage's work in the middle, the
shared loop around it. `lineinspect run <stage>` and `lineinspect up` call `run_stage`."""

import importlib

import redis

from lineinspect.shared.config import Settings, prepare_torch_process
from lineinspect.shared.errors import LineinspectError
from lineinspect.shared.streaming.clients import largest_output_bytes, make_consumer, make_producer
from lineinspect.shared.streaming.health import StageHealth, member_name
from lineinspect.shared.streaming.loop import Stage, StageLoop
from lineinspect.shared.streaming.topics import Topics, ensure_topics
from lineinspect.services import SERVICES


def build_stage(name: str, settings: Settings, redis_client: redis.Redis) -> Stage:
    if name not in SERVICES:
        raise LineinspectError(f"unknown service {name!r}; choose one of {', '.join(SERVICES)}")
    module = importlib.import_module(f"lineinspect.services.{name}.stage")
    return module.build(settings, Topics(settings.topic_prefix), redis_client)


def group_id(settings: Settings, stage: str) -> str:
    return f"{settings.topic_prefix}{stage}{settings.group_suffix}"


def stage_loop(name: str, settings: Settings) -> StageLoop:
    prepare_torch_process()
    redis_client = redis.Redis.from_url(settings.redis_url)
    topics = Topics(settings.topic_prefix)
    ensure_topics(settings, topics)
    stage = build_stage(name, settings, redis_client)
    client_id = f"lineinspect-{name}-{member_name()}"
    consumer = make_consumer(settings, group_id(settings, name), client_id)
    producer = make_producer(settings, client_id)
    health = StageHealth(name, redis_client, settings.redis_prefix, settings.health_port)
    max_input = settings.max_frame_bytes if stage.input_topics == [topics.frames] else largest_output_bytes(settings)
    return StageLoop(stage, consumer, producer, settings, topics.deadletter, health, max_input)


def run_stage(name: str, settings: Settings) -> None:
    loop = stage_loop(name, settings)
    loop.stop_on_signals()
    loop.run()
