"""Pictures of the frames a person should see: for each `fail` and `review` verdict, the
reviewer keeps a small JPEG in Redis (frame, product-mask outline in green, heatmap in red
where it is past half the threshold, defect boxes), and a list of the latest ones per line.
The dashboard shows that list. Only the pictures on it are kept: one that falls off the end is
deleted, so Redis holds at most `RECENT` pictures per line whatever the line's rate (kept for
every fail and review verdict until their TTL, a line at 10 frames/s with 5 % of them failing
would pile up about 300,000 JPEGs, several GB, in a week). A picture still expires with its
verdict when that comes first."""

from collections.abc import Sequence

import cv2
import numpy as np
import redis

from lineinspect.schemas import Frame
from lineinspect.shared.images import decode_mask, encode_jpeg
from lineinspect.shared.models.mask.inference import WHOLE_FRAME

MAX_SIDE = 320
RECENT = 200


def draw_overlay(image: np.ndarray, frame: Frame, product_mask: np.ndarray | None = None, max_side: int = MAX_SIDE) -> bytes:
    """JPEG of `image` (uint8 BGR) with what the line found drawn on it; `product_mask` is the
    frame's mask when the caller has already decoded it."""
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    picture = cv2.resize(image, size, interpolation=cv2.INTER_AREA) if scale < 1.0 else image.copy()
    if frame.anomaly is not None:
        heat = cv2.imdecode(np.frombuffer(frame.anomaly.heatmap, np.uint8), cv2.IMREAD_GRAYSCALE)
        if heat is not None:
            if heat.shape[::-1] != size:
                heat = cv2.resize(heat, size, interpolation=cv2.INTER_LINEAR)
            # grey level 255 = heatmap_scale x threshold; weight 0 below half the threshold
            level = heat.astype(np.float32) * (frame.anomaly.heatmap_scale / 255.0)
            weight = np.clip((level - 0.5) / 0.5, 0.0, 1.0) * 0.6
            red = np.zeros_like(picture)
            red[..., 2] = 255
            picture = cv2.blendLinear(picture, red, 1.0 - weight, weight)
        for region in frame.anomaly.regions:
            corner1 = (round(region.x1 * scale), round(region.y1 * scale))
            corner2 = (round(region.x2 * scale) - 1, round(region.y2 * scale) - 1)
            cv2.rectangle(picture, corner1, corner2, (0, 255, 255), 1)
    if frame.mask is not None and frame.mask.mode != WHOLE_FRAME:
        mask = product_mask if product_mask is not None else decode_mask(frame.mask.mask)
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(picture, contours, -1, (0, 200, 0), 1)
    return encode_jpeg(picture, quality=80)


class OverlayStore:
    def __init__(self, client: redis.Redis, prefix: str = "lineinspect:", ttl_s: int = 7 * 24 * 3600) -> None:
        self.redis = client
        self.prefix = prefix
        self.ttl_s = ttl_s

    def _key(self, frame_id: str) -> str:
        return f"{self.prefix}overlay:{frame_id}"

    def _recent_key(self, line_id: str) -> str:
        return f"{self.prefix}problems:{line_id}"

    def put(self, pictures: Sequence[tuple[Frame, bytes]]) -> None:
        if not pictures:
            return
        pipe = self.redis.pipeline()
        for frame, picture in pictures:
            pipe.set(self._key(frame.frame_id), picture, ex=self.ttl_s)
            pipe.lrem(self._recent_key(frame.line_id), 0, frame.frame_id)  # a repeat moves to the front
            pipe.lpush(self._recent_key(frame.line_id), frame.frame_id)
        pipe.execute()
        for line_id in {frame.line_id for frame, _ in pictures}:
            self._keep_latest(line_id)

    def _keep_latest(self, line_id: str) -> None:
        """Trim the line's list to `RECENT` frames and delete the pictures that fell off, in one
        transaction that starts again if another reviewer changed the list meanwhile."""
        recent = self._recent_key(line_id)

        def trim(pipe: redis.client.Pipeline) -> None:
            dropped = pipe.lrange(recent, RECENT, -1)
            pipe.multi()
            pipe.ltrim(recent, 0, RECENT - 1)
            if dropped:
                pipe.delete(*(self._key(frame_id.decode()) for frame_id in dropped))

        self.redis.transaction(trim, recent)

    def get(self, frame_id: str) -> bytes | None:
        return self.redis.get(self._key(frame_id))

    def recent(self, line_id: str, count: int = 20) -> list[str]:
        return [f.decode() for f in self.redis.lrange(self._recent_key(line_id), 0, count - 1)]
