"""reviewer: scored frames in (topic `scored`); out go a `Verdict` per frame (topic
`verdicts`, keyed by frame_id, and the Redis verdict cache) and a `Telemetry` per frame
(topic `telemetry`).

The reviewer grades the (frame, mask) pair; the decision rule turns score and grade into
pass / fail / review. Masks of `whole_frame` routes are exact by configuration and are not
graded (the verdict's mask_grade is null)."""

from collections.abc import Sequence
from datetime import datetime, timezone

import redis
from kafka.consumer.fetcher import ConsumerRecord

from lineinspect.schemas import Frame, ReviewResult, Telemetry, Verdict
from lineinspect.shared.config import Settings
from lineinspect.shared.line.decision import DecisionRule
from lineinspect.shared.line.frames import frame_mask
from lineinspect.shared.line.routing import StageModels
from lineinspect.shared.line.stage import FrameStage, FrameWork, Stopwatch, by_model
from lineinspect.shared.line.overlays import OverlayStore, draw_overlay
from lineinspect.shared.line.telemetry import image_embedding, image_stats
from lineinspect.shared.line.verdict_cache import VerdictCache
from lineinspect.shared.models.mask.inference import WHOLE_FRAME
from lineinspect.shared.models.reviewer.inference import Reviewer
from lineinspect.shared.streaming.deadletter import Refused
from lineinspect.shared.streaming.loop import Outgoing
from lineinspect.shared.streaming.topics import Topics


def verdict_for(frame: Frame, rule: DecisionRule, decided_at: datetime) -> Verdict:
    assert frame.mask is not None and frame.anomaly is not None
    anomaly, review = frame.anomaly, frame.review
    decision, reasons = rule.decide(anomaly, review)
    started = frame.published_at or frame.captured_at
    versions = {"mask": frame.mask.model_version, "anomaly": anomaly.model_version}
    if anomaly.detector_version is not None:
        versions["detector"] = anomaly.detector_version
    latencies = {"mask": frame.mask.latency_ms, "anomaly": anomaly.latency_ms}
    if review is not None:
        versions["reviewer"] = review.model_version
        latencies["reviewer"] = review.latency_ms
    return Verdict(
        frame_id=frame.frame_id,
        line_id=frame.line_id,
        camera_id=frame.camera_id,
        image_type=frame.image_type,
        part_id=frame.part_id,
        captured_at=frame.captured_at,
        decided_at=decided_at,
        decision=decision,
        reasons=reasons,
        score=anomaly.score,
        threshold=anomaly.threshold,
        normalised_score=anomaly.normalised_score,
        regions=anomaly.regions,
        mask_grade=review.grade if review is not None else None,
        model_versions=versions,
        latency_ms=max(0.0, (decided_at - started).total_seconds() * 1000.0),
        stage_latency_ms=latencies,
    )


def telemetry_for(item: FrameWork, verdict: Verdict) -> Telemetry:
    frame = item.frame
    assert frame.mask is not None
    return Telemetry(
        frame_id=frame.frame_id,
        line_id=frame.line_id,
        camera_id=frame.camera_id,
        image_type=frame.image_type,
        captured_at=frame.captured_at,
        image_stats=image_stats(item.image),
        embedding=image_embedding(item.image),
        anomaly_score=verdict.score,
        normalised_score=verdict.normalised_score,
        mask_area_fraction=frame.mask.area_fraction,
        mask_confidence=frame.mask.confidence,
        mask_grade=verdict.mask_grade,
        decision=verdict.decision,
        latency_ms=verdict.latency_ms,
        stage_latency_ms=verdict.stage_latency_ms,
        model_versions=verdict.model_versions,
        product_mask=None if frame.mask.mode == WHOLE_FRAME else frame.mask.mask,
    )


class ReviewerStage(FrameStage[Reviewer]):
    name = "reviewer"

    def __init__(
        self, settings: Settings, topics: Topics, models: StageModels[Reviewer], cache: VerdictCache, overlays: OverlayStore
    ) -> None:
        super().__init__(settings, topics, models)
        self.input_topics = [topics.scored]
        self.cache = cache
        self.overlays = overlays
        self.rule = DecisionRule(settings.review_band)

    def route_for(self, frame: Frame) -> tuple[str, Reviewer | None]:
        if frame.anomaly is None:
            raise Refused(
                "validation", f"frame {frame.frame_id} has no anomaly result; route frames through the anomaly stage first",
                frame.frame_id,
            )
        if frame.mask is not None and frame.mask.mode == WHOLE_FRAME:
            return WHOLE_FRAME, None
        return super().route_for(frame)

    def decode(self, record: ConsumerRecord) -> FrameWork[Reviewer]:
        item = super().decode(record)
        item.mask = frame_mask(item.frame, item.image)
        return item

    def process(self, items: Sequence[FrameWork[Reviewer]]) -> list[list[Outgoing] | Refused]:
        clock = Stopwatch()
        reviews = {}
        for reviewer, indices in by_model(items):
            images, masks = [items[i].image for i in indices], [items[i].mask for i in indices]
            for index, review in zip(indices, reviewer.review(images, masks)):
                reviews[index] = review
        latency = clock.ms()
        decided_at = datetime.now(timezone.utc)
        outputs: list[list[Outgoing] | Refused] = []
        for index, item in enumerate(items):
            if index in reviews:
                review = reviews[index]
                item.frame.review = ReviewResult(
                    grade=review.grade, probabilities=list(review.probabilities),
                    model_version=item.model.version, latency_ms=latency,
                )
            verdict = verdict_for(item.frame, self.rule, decided_at)
            item.result = verdict
            telemetry = telemetry_for(item, verdict)
            outputs.append([
                Outgoing(self.topics.verdicts, verdict.frame_id.encode(), verdict.model_dump_json().encode()),
                Outgoing(self.topics.telemetry, item.frame.camera_id.encode(), telemetry.model_dump_json().encode()),
            ])
        return outputs

    def delivered(self, items: Sequence[FrameWork[Reviewer]], outputs: Sequence[list[Outgoing]]) -> None:
        # After the broker has the verdicts and before the commit: the cache mirrors the topic.
        self.cache.put([item.result for item in items])
        self.overlays.put([
            (item.frame, draw_overlay(item.image, item.frame, item.mask)) for item in items if item.result.decision != "pass"
        ])


def build(settings: Settings, topics: Topics, redis_client: redis.Redis) -> ReviewerStage:
    models = StageModels(
        "reviewer", settings.packages, Reviewer.from_package, lambda m: m.version, settings.reload_interval_s, required=False
    )
    cache = VerdictCache(redis_client, settings.redis_prefix, settings.verdict_ttl_s, settings.recent_verdicts)
    return ReviewerStage(settings, topics, models, cache, OverlayStore(redis_client, settings.redis_prefix, settings.verdict_ttl_s))
