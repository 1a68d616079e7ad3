"""The services of the line, each a small folder: where its input comes from, what it adds,
where it sends it. `lineinspect run <service>` starts one of them.

- camera: the camera simulator (`lineinspect publish`) -> `frames`
- mask_finder: `frames` -> `masked`
- anomaly: `masked` -> `scored`
- reviewer: `scored` -> `verdicts` (+ Redis verdict cache) and `telemetry`
- monitor: `telemetry`, `verdicts`, `labels` -> accuracy, drift checks, reports, `alerts`
"""

# Model stages run by the shared consume-process-produce loop, in flow order.
STAGES = ("mask_finder", "anomaly", "reviewer")
# Everything `lineinspect run` can start: the model stages and the monitor beside them.
SERVICES = (*STAGES, "monitor")
