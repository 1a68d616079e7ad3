"""Kafka plumbing shared by every stage: topic names, clients with explicit size limits, the
one consume-process-produce loop, dead letters, stage health, and the embedded broker and
Redis that `lineinspect demo` and the integration tests start."""
