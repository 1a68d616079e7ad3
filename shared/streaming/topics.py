"""Topic names of the line, each carrying the configured prefix, and creating them."""

from dataclasses import dataclass

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from lineinspect.shared.config import Settings


@dataclass(frozen=True)
class Topics:
    """Where each event travels. Frame topics are keyed by camera_id, verdicts by frame_id."""

    prefix: str = "lineinspect."

    @property
    def frames(self) -> str:
        return f"{self.prefix}frames"

    @property
    def masked(self) -> str:
        return f"{self.prefix}masked"

    @property
    def scored(self) -> str:
        return f"{self.prefix}scored"

    @property
    def verdicts(self) -> str:
        return f"{self.prefix}verdicts"

    @property
    def telemetry(self) -> str:
        return f"{self.prefix}telemetry"

    @property
    def labels(self) -> str:
        return f"{self.prefix}labels"

    @property
    def deadletter(self) -> str:
        return f"{self.prefix}deadletter"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}alerts"

    def all(self) -> list[str]:
        return [
            self.frames, self.masked, self.scored, self.verdicts,
            self.telemetry, self.labels, self.deadletter, self.alerts,
        ]


def ensure_topics(settings: Settings, topics: Topics | None = None) -> list[str]:
    """Create the line's topics that do not exist yet, with `settings.partitions` partitions
    each; returns the names created. Partitions cannot be added later on every broker (Tansu
    cannot), so choose enough for the replicas you will run."""
    topics = topics or Topics(settings.topic_prefix)
    existing = existing_topics(settings)
    missing = [name for name in topics.all() if name not in existing]
    if not missing:
        return []
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="lineinspect-admin")
    try:
        admin.create_topics([NewTopic(name, settings.partitions, 1) for name in missing])
    except TopicAlreadyExistsError:
        pass  # another process created them first
    finally:
        admin.close()
    return missing


def existing_topics(settings: Settings) -> set[str]:
    """Topic names on the broker, from a plain metadata request: kafka-python 2.3's admin
    `list_topics` fails on Tansu, which reports ACL operations that client does not know."""
    probe = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, client_id="lineinspect-admin")
    try:
        return set(probe.topics())
    finally:
        probe.close()
