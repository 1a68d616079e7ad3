"""Where the monitor's alerts go: the `alerts` topic (acknowledged before the monitor moves
on), the store (the dashboard and reports read them there) and the log."""

from kafka import KafkaProducer

from lineinspect.schemas import Alert
from lineinspect.shared.logs import get_logger
from lineinspect.shared.monitor.store import MonitorStore


class AlertSink:
    def __init__(self, producer: KafkaProducer, topic: str, store: MonitorStore) -> None:
        self.producer = producer
        self.topic = topic
        self.store = store
        self.log = get_logger("lineinspect.monitor.alerts")

    def __call__(self, alert: Alert) -> None:
        self.store.add_alert(alert)
        self.producer.send(self.topic, key=alert.image_type.encode(), value=alert.model_dump_json().encode()).get(timeout=30)
        self.log.warning("alert", alert_id=alert.alert_id, kind=alert.kind, image_type=alert.image_type,
                         figure=alert.figure, value=alert.value, threshold=alert.threshold, message=alert.message)

    def close(self) -> None:
        self.producer.close(timeout=10)
