"""Reading, decoding and encoding images and masks with OpenCV.

Images are uint8 BGR arrays (H, W, 3) everywhere inside lineinspect (grey images are
expanded to three channels); masks are bool arrays (H, W), True = product / defect.
"""

from pathlib import Path

import cv2
import numpy as np

from lineinspect.shared.errors import ImageReadError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _as_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    raise ImageReadError(f"unsupported pixel type {image.dtype}; use 8- or 16-bit images")


def read_image(path: str | Path) -> np.ndarray:
    """An image file as uint8 BGR (H, W, 3); raises ImageReadError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: image file not found")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageReadError(f"{path}: not a readable image (corrupt or unsupported format)")
    return _as_bgr(_to_uint8(image))


def read_mask(path: str | Path) -> np.ndarray:
    """A mask file as bool (H, W): pixels brighter than 127 are True."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: mask file not found")
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise ImageReadError(f"{path}: not a readable mask image (corrupt or unsupported format)")
    return mask > 127


def decode_image(data: bytes, what: str = "image") -> np.ndarray:
    """Encoded PNG/JPEG/BMP bytes as uint8 BGR (H, W, 3)."""
    if not data:
        raise ImageReadError(f"{what}: empty image bytes")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageReadError(f"{what}: image bytes could not be decoded (corrupt or not PNG/JPEG/BMP)")
    return _as_bgr(_to_uint8(image))


def decode_mask(data: bytes, what: str = "mask") -> np.ndarray:
    if not data:
        raise ImageReadError(f"{what}: empty mask bytes")
    mask = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise ImageReadError(f"{what}: mask bytes could not be decoded")
    return mask > 127


def encoded_format(data: bytes) -> str | None:
    """"png" or "jpeg" when `data` starts like that kind of file, else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    return None


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of a uint8 image or a bool mask (stored as 0/255)."""
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ImageReadError("PNG encoding failed")
    return buf.tobytes()


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageReadError("JPEG encoding failed")
    return buf.tobytes()


def write_image(path: str | Path, image: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if not cv2.imwrite(str(path), image):
        raise ImageReadError(f"{path}: could not write image (check the folder and extension)")
