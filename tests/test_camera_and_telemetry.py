"""What a camera sends and what the reviewer measures of every frame, without a broker:
image files go out as they are when already in the camera's encoding, and the per-frame
image statistics are the plain numpy definitions."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from lineinspect.services.camera.publisher import Publisher
from lineinspect.services.camera.sources import folder_shots
from lineinspect.shared.images import decode_image, encoded_format
from lineinspect.shared.line.telemetry import grey_percentiles, image_stats


def noisy_image(seed: int, height: int = 48, width: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_a_png_file_is_published_as_it_is_and_a_bmp_is_encoded(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), noisy_image(1))
    cv2.imwrite(str(tmp_path / "b.bmp"), noisy_image(2))
    shots = {Path(s.source).name: s for s in folder_shots(tmp_path, "tile")}
    png_camera = Publisher(producer=None, topic="frames", line_id="line-1", encoding="png")
    assert png_camera.image_bytes(shots["a.png"]) == (tmp_path / "a.png").read_bytes()
    assert shots["b.bmp"].encoded is None
    bmp_as_png = png_camera.image_bytes(shots["b.bmp"])
    assert encoded_format(bmp_as_png) == "png" and np.array_equal(decode_image(bmp_as_png), noisy_image(2))


def test_a_camera_set_to_jpeg_encodes_a_png_file_as_jpeg(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), noisy_image(3))
    shot = next(folder_shots(tmp_path, "tile"))
    jpeg_camera = Publisher(producer=None, topic="frames", line_id="line-1", encoding="jpeg")
    assert encoded_format(jpeg_camera.image_bytes(shot)) == "jpeg"


@pytest.mark.parametrize("kind", ["noise", "flat", "few_levels", "one_pixel"])
def test_grey_percentiles_equal_numpy_percentiles(kind: str) -> None:
    rng = np.random.default_rng(7)
    grey = {
        "noise": rng.integers(0, 256, (37, 53), dtype=np.uint8),
        "flat": np.full((20, 30), 77, np.uint8),
        "few_levels": (rng.integers(0, 3, (31, 17)) * 100).astype(np.uint8),
        "one_pixel": np.full((1, 1), 200, np.uint8),
    }[kind]
    percents = [0, 5, 33.3, 50, 95, 100]
    assert grey_percentiles(grey, percents) == pytest.approx(list(np.percentile(grey, percents)), abs=1e-9)


def test_image_stats_are_the_numpy_statistics_of_the_frame() -> None:
    image = noisy_image(4)
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    stats = image_stats(image)
    assert (stats.width, stats.height) == (64, 48)
    assert stats.mean == pytest.approx(grey.mean()) and stats.std == pytest.approx(grey.std(), abs=1e-4)
    assert stats.channel_means == pytest.approx([image[..., c].mean() for c in (2, 1, 0)])
    assert stats.saturation_mean == pytest.approx(cv2.cvtColor(image, cv2.COLOR_BGR2HSV)[..., 1].mean())
    assert [stats.p05, stats.p95] == pytest.approx(list(np.percentile(grey, [5, 95])))
