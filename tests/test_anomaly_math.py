"""The math of the anomaly model on its own: coreset selection, nearest-patch search (exact
and inverted-file), smoothing, region finding, threshold choice and the defect probe."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lineinspect.shared.models.anomaly.config import AnomalyConfig
from lineinspect.shared.models.anomaly.calibration import f1_optimal_threshold, normal_quantile_threshold
from lineinspect.shared.models.anomaly.inference import ReferenceLevels, whole_product_region
from lineinspect.shared.models.anomaly.metrics import PixelAuroc
from lineinspect.shared.models.anomaly.probe import DefectProbe, fit_probe, labelled_patches
from lineinspect.shared.models.anomaly.regions import find_regions
from lineinspect.shared.models.anomaly.torch_model import (
    NearestPatchSearch,
    edge_cells,
    edge_profile,
    gaussian_blur,
    greedy_coreset,
    ivf_list_count,
    kmeans,
    level_edges,
)


def test_greedy_coreset_takes_one_patch_from_each_far_cluster() -> None:
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    points = centres.repeat_interleave(20, 0) + torch.randn(60, 2, generator=generator)
    chosen = greedy_coreset(points[None], 3, generator=generator)[0]
    assert sorted((chosen // 20).tolist()) == [0, 1, 2]


def test_greedy_coreset_only_chooses_valid_patches() -> None:
    points = torch.randn(2, 50, 4, generator=torch.Generator().manual_seed(1))
    valid = torch.zeros(2, 50, dtype=torch.bool)
    valid[0, :10] = True
    valid[1, 40:] = True
    chosen = greedy_coreset(points, 5, valid=valid)
    assert all(valid[0, chosen[0]]) and all(valid[1, chosen[1]])
    assert len(set(chosen[0].tolist())) == 5


def test_exact_search_matches_brute_force() -> None:
    generator = torch.Generator().manual_seed(2)
    bank, queries = torch.randn(500, 16, generator=generator), torch.randn(40, 16, generator=generator)
    expected = torch.cdist(queries, bank).min(dim=1).values
    assert torch.allclose(NearestPatchSearch(bank).distances(queries), expected, atol=1e-3)


def test_inverted_file_search_is_exact_when_all_lists_are_probed_and_never_too_small() -> None:
    generator = torch.Generator().manual_seed(3)
    bank, queries = torch.randn(3000, 16, generator=generator), torch.randn(200, 16, generator=generator)
    expected = torch.cdist(queries, bank).min(dim=1).values
    centroids = kmeans(bank, 32, seed=0)
    everything = NearestPatchSearch(bank, centroids, probes=32).distances(queries)
    assert torch.allclose(everything, expected, atol=1e-3)
    approximate = NearestPatchSearch(bank, centroids, probes=2).distances(queries)
    # Searching fewer lists can only miss the true nearest patch, never find a closer one.
    assert bool((approximate >= expected - 1e-3).all())
    assert float((approximate - expected).abs().lt(1e-3).float().mean()) > 0.5


def test_exact_distances_search_the_whole_bank_whatever_the_index() -> None:
    generator = torch.Generator().manual_seed(4)
    bank, queries = torch.randn(3000, 16, generator=generator), torch.randn(200, 16, generator=generator)
    expected = torch.cdist(queries, bank).min(dim=1).values
    search = NearestPatchSearch(bank, kmeans(bank, 32, seed=0), probes=1)
    assert bool((search.distances(queries) > expected + 1e-3).any())  # one list misses some nearest patches
    assert torch.allclose(search.exact_distances(queries), expected, atol=1e-3)


def test_kmeans_is_seeded() -> None:
    data = torch.randn(2000, 8, generator=torch.Generator().manual_seed(4))
    assert torch.equal(kmeans(data, 16, seed=5), kmeans(data, 16, seed=5))
    assert ivf_list_count(100_000) >= 16


def test_gaussian_blur_keeps_a_flat_map_flat_and_spreads_a_peak() -> None:
    flat = torch.full((1, 32, 32), 3.0)
    assert torch.allclose(gaussian_blur(flat, 2.0), flat)
    peak = torch.zeros(1, 33, 33)
    peak[0, 16, 16] = 1.0
    blurred = gaussian_blur(peak, 2.0)
    assert blurred[0, 16, 16] < 1.0 and blurred[0, 16, 18] > 0
    assert float(blurred.sum()) == pytest.approx(1.0, abs=1e-4)


def test_gaussian_blur_is_the_separable_convolution_with_reflected_borders() -> None:
    maps = torch.rand(2, 40, 56, generator=torch.Generator().manual_seed(3))
    sigma = 2.5
    radius = math.ceil(3 * sigma)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets**2) / (2 * sigma * sigma))
    kernel = kernel / kernel.sum()
    x = F.pad(maps[:, None], (radius, radius, 0, 0), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))[:, 0]
    assert torch.allclose(gaussian_blur(maps, sigma), x, atol=1e-5)


def test_find_regions_returns_every_region_with_its_box_strongest_first() -> None:
    heat = np.zeros((60, 80), np.float32)
    heat[:] = 0.2  # a quiet product
    heat[10:20, 5:15] = 1.5  # strong region
    heat[40:50, 60:75] = 1.1  # weaker region
    heat[30:32, 30:32] = 0.9  # below the seed level: not a region
    regions = find_regions(heat)
    assert [(r.x1, r.y1, r.x2, r.y2) for r in regions] == [(5, 10, 15, 20), (60, 40, 75, 50)]
    assert regions[0].score == pytest.approx(1.5) and regions[0].area_px == 100


def test_edge_cells_count_cells_to_the_nearer_edge_up_to_the_interior() -> None:
    cells = edge_cells(5, 7, 2)  # index = row ring * 3 + column ring
    assert cells[0, 0] == 0 and cells[0, 3] == 2 and cells[2, 0] == 6 and cells[2, 3] == 8
    assert torch.equal(cells, cells.flip(0)) and torch.equal(cells, cells.flip(1))


def test_edge_profile_measures_how_much_higher_normal_edges_score_and_levelling_flattens_them() -> None:
    generator = torch.Generator().manual_seed(0)
    # Normal grids whose outer ring of cells scores 1.5x and whose corners 2x the interior.
    place = torch.ones(12, 16)
    place[0, :] = place[-1, :] = place[:, 0] = place[:, -1] = 1.5
    place[0, 0] = place[0, -1] = place[-1, 0] = place[-1, -1] = 2.0
    grids = [place * (3.0 + 0.1 * torch.randn(12, 16, generator=generator)) for _ in range(40)]
    profile = edge_profile(grids, [None] * len(grids), rings=2)
    assert profile.shape == (3, 3)
    assert profile[0, 0] == pytest.approx(2.0, rel=0.02) and profile[0, 2] == pytest.approx(1.5, rel=0.02)
    assert profile[1, 1] == pytest.approx(1.0, rel=0.02) and profile[2, 2] == 1.0
    levelled = level_edges(grids[0], profile)
    assert float(levelled.max() / levelled.min()) < 1.3 < float(grids[0].max() / grids[0].min())


def test_edge_profile_counts_only_masked_patches_and_keeps_thin_places_at_one() -> None:
    grid = torch.full((10, 10), 2.0)
    grid[0, :] = 50.0  # background above the product: must not count
    mask = torch.ones(10, 10, dtype=torch.bool)
    mask[0, :] = False
    assert torch.allclose(edge_profile([grid] * 10, [mask] * 10, rings=1), torch.ones(2, 2))
    # Too few patches for any place (a single small grid): no levelling at all.
    assert torch.equal(edge_profile([torch.rand(4, 4)], [None], rings=1), torch.ones(2, 2))


def test_f1_optimal_threshold_separates_separable_scores() -> None:
    threshold = f1_optimal_threshold(np.array([1.0, 2.0, 3.0]), np.array([5.0, 6.0]))
    assert 3.0 < threshold.value <= 5.0
    assert threshold.method == "f1_optimal" and threshold.f1 == 1.0


def test_normal_quantile_threshold_states_quantile_and_margin() -> None:
    threshold = normal_quantile_threshold(np.linspace(0.0, 10.0, 101), 0.99, 0.10)
    assert threshold.value == pytest.approx(9.9 * 1.1)
    assert "0.99 quantile" in threshold.explanation and "plus a 10% margin" in threshold.explanation
    lowered = normal_quantile_threshold(np.linspace(0.0, 10.0, 101), 0.95, -0.05)
    assert lowered.value == pytest.approx(9.5 * 0.95)
    assert "0.95 quantile" in lowered.explanation and "minus a 5% margin" in lowered.explanation


def test_pixel_auroc_is_one_for_perfect_and_half_for_flat_maps() -> None:
    truth = np.zeros((20, 20), bool)
    truth[5:10, 5:10] = True
    perfect = PixelAuroc()
    perfect.add(truth.astype(np.float32), truth)
    flat = PixelAuroc()
    flat.add(np.ones((20, 20), np.float32), truth)
    assert perfect.value() == pytest.approx(1.0) and flat.value() == pytest.approx(0.5)


def test_image_score_is_the_larger_of_peak_and_mean_relative_to_normal_levels() -> None:
    levels = ReferenceLevels(peak=10.0, mean=4.0)
    assert levels.score(10.0, 2.0) == pytest.approx(1.0)  # a normal-looking peak
    assert levels.score(25.0, 2.0) == pytest.approx(2.5)  # a local defect
    assert levels.score(8.0, 6.0) == pytest.approx(1.5)  # the whole product off, no single spot
    assert ReferenceLevels().score(3.0, 100.0) == pytest.approx(3.0)  # mean term off by default


def test_whole_product_region_boxes_the_product() -> None:
    mask = np.zeros((40, 50), bool)
    mask[5:25, 10:30] = True
    region = whole_product_region(mask, 50, 40, 1.3)
    assert (region.x1, region.y1, region.x2, region.y2, region.area_px) == (10, 5, 30, 25, 400)
    assert whole_product_region(None, 50, 40, 1.3).area_px == 2000


@pytest.mark.parametrize("height, width", [(300, 600), (620, 230), (256, 256), (100, 1200)])
def test_keep_aspect_input_keeps_the_ratio_and_about_the_pixel_count(height: int, width: int) -> None:
    config = AnomalyConfig(input_size=224)
    h, w = config.input_shape(height, width)
    assert h % 32 == 0 and w % 32 == 0
    assert abs(np.log((w / h) / (width / height))) < 0.25
    assert 0.6 < h * w / 224**2 < 1.5


def test_square_input_ignores_the_ratio() -> None:
    assert AnomalyConfig(input_size=160, resize="square").input_shape(300, 600) == (160, 160)


def test_model_input_is_imagenet_normalised_rgb_in_channels_first_layout() -> None:
    from lineinspect.shared.models.backbone import IMAGENET_MEAN, IMAGENET_STD, to_input_tensor

    images = [np.random.default_rng(seed).integers(0, 256, (12, 20, 3), dtype=np.uint8) for seed in (1, 2)]
    batch = to_input_tensor(images)
    assert batch.shape == (2, 3, 12, 20) and batch.dtype == torch.float32 and batch.is_contiguous()
    for image, tensor in zip(images, batch):
        expected = (image[..., ::-1].astype(np.float64) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        assert np.allclose(tensor.numpy().transpose(1, 2, 0), expected, atol=1e-5)


def _patch_grid(defect: np.ndarray, seed: int) -> torch.Tensor:
    """(6, h, w) features: noise everywhere, channel 2 shifted up where `defect` is set."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(6, *defect.shape, generator=generator)
    features[2] += 3.0 * torch.from_numpy(defect.astype(np.float32))
    return features


def test_labelled_patches_leave_a_defects_outline_and_the_background_out() -> None:
    share = np.zeros((8, 8), np.float32)
    share[2:5, 2:5] = 1.0
    share[2:5, 5] = 0.1  # a sliver of defect in the next column: neither defect nor clean
    inside = np.ones((8, 8), bool)
    inside[:, 7] = False  # outside the product
    patches = labelled_patches(torch.randn(4, 8, 8), share, inside)
    assert patches.features.shape == (len(patches.is_defect), 4)
    assert patches.is_defect.sum() == 9
    # 64 cells - 7 outside the product - 9 defect - the 3 slivers and the other cells touching a defect.
    near = np.zeros((8, 8), bool)
    near[1:6, 1:7] = True
    assert len(patches.is_defect) == 9 + int((~near & inside).sum())


def test_defect_probe_learns_what_sets_defect_patches_apart_and_raises_their_distances() -> None:
    rng = np.random.default_rng(0)
    images = []
    for seed in range(6):
        defect = np.zeros((12, 12), bool)
        y, x = rng.integers(0, 8, 2)
        defect[y : y + 4, x : x + 4] = True
        images.append(labelled_patches(_patch_grid(defect, seed), defect.astype(np.float32)))
    probe = fit_probe(images, gain=3.0, strength=1.0)
    assert int(probe.weights.abs().argmax()) == 2
    unseen = np.zeros((12, 12), bool)
    unseen[6:10, 1:5] = True
    features = _patch_grid(unseen, 99)
    p = probe.probabilities(features)
    assert float(p[torch.from_numpy(unseen)].mean()) > 0.8 > 0.2 > float(p[torch.from_numpy(~unseen)].mean())
    distances = torch.full((12, 12), 2.0)
    assert torch.allclose(probe.raise_distances(distances, features), 2.0 * (1 + 3.0 * p))
    again = DefectProbe.from_tensors(probe.tensors(), gain=3.0)
    assert again is not None and torch.equal(again.probabilities(features), p)
    assert DefectProbe.from_tensors({}, gain=3.0) is None


def test_defect_probe_needs_defect_and_clean_patches() -> None:
    clean = labelled_patches(torch.randn(4, 6, 6), np.zeros((6, 6), np.float32))
    with pytest.raises(ValueError, match="both defect and clean"):
        fit_probe([clean], gain=3.0, strength=1.0)
