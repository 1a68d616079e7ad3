"""reviewer: reads `scored`, grades how far the mask can be trusted, decides pass / fail /
review, and sends the verdict (topic `verdicts`, and Redis) and telemetry (topic `telemetry`)."""
