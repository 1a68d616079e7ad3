"""The inspection line's own rules, apart from Kafka: reading frames off the wire, model
routing per image type with hot swap, the pass/fail/review decision, the verdict cache and
per-frame telemetry."""
