"""Frames on the wire: parsing an event into a `Frame`, decoding its image and mask, and
encoding what a stage adds. Failures raise `Refused` with a reason that says what to do."""

import numpy as np
from pydantic import ValidationError

from lineinspect.schemas import Frame
from lineinspect.shared.errors import ImageReadError
from lineinspect.shared.images import decode_image, decode_mask
from lineinspect.shared.streaming.deadletter import Refused, frame_id_of


def parse_frame(value: bytes | None) -> Frame:
    if not value:
        raise Refused("decode", "empty message; a frame is a JSON Frame event (schemas/json/frame.schema.json)")
    try:
        return Frame.model_validate_json(value)
    except ValidationError as exc:
        frame_id = frame_id_of(value)
        json_error = any(error["type"] == "json_invalid" for error in exc.errors())
        if json_error:
            raise Refused("decode", f"not JSON ({exc.errors()[0]['msg']}); publish Frame events as UTF-8 JSON", frame_id) from None
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or 'event'}: {error['msg']}" for error in exc.errors()[:5]
        )
        raise Refused(
            "validation",
            f"not a valid Frame ({problems}); see schemas/json/frame.schema.json",
            frame_id,
        ) from None


def frame_image(frame: Frame) -> np.ndarray:
    try:
        return decode_image(frame.image, what=f"frame {frame.frame_id}")
    except ImageReadError as exc:
        raise Refused("decode", f"{exc}; the camera must send PNG or JPEG bytes", frame.frame_id) from None


def frame_mask(frame: Frame, image: np.ndarray) -> np.ndarray:
    """The product mask the mask_finder added, checked against the frame's size."""
    if frame.mask is None:
        raise Refused("validation", f"frame {frame.frame_id} has no mask result; route frames through mask_finder first", frame.frame_id)
    try:
        mask = decode_mask(frame.mask.mask, what=f"frame {frame.frame_id} mask")
    except ImageReadError as exc:
        raise Refused("decode", str(exc), frame.frame_id) from None
    if mask.shape != image.shape[:2]:
        raise Refused(
            "validation",
            f"frame {frame.frame_id}: mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
            f"{image.shape[1]}x{image.shape[0]}",
            frame.frame_id,
        )
    return mask


def frame_json(frame: Frame) -> bytes:
    return frame.model_dump_json().encode()

