"""The anomaly model end to end on small generated images: trained from normals, it finds and
boxes a planted defect, scores only inside the product mask, chooses its threshold the way
the manifest allows, and survives a package round trip with identical scores; tampered or
wrong-kind packages are refused; `train anomaly` and `evaluate anomaly` work from the CLI."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lineinspect.shared.datasets.manifest import ManifestRow, read_manifest
from lineinspect.shared.datasets.split import SplitPlan, split_rows
from lineinspect.shared.datasets.synth import generate_sample, synthesize_dataset
from lineinspect.shared.datasets.synth.dataset import sample_rng
from lineinspect.shared.errors import ModelPackageError
from lineinspect.shared.models.anomaly.config import AnomalyConfig
from lineinspect.shared.models.anomaly.inference import AnomalyModel, batch_by_shape, prepare_image
from lineinspect.shared.images import write_image
from lineinspect.shared.models.anomaly.training import calibration_defects, fit_defect_probe, plan_training, train_anomaly
from lineinspect.shared.models.package import load_package

pytestmark = pytest.mark.slow
CONFIG = AnomalyConfig()  # the defaults users get
SIZE = 192


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> list[ManifestRow]:
    folder = tmp_path_factory.mktemp("synth")
    manifest = synthesize_dataset(folder, ["disc"], count=100, seed=3, size=SIZE, anomaly_fraction=0.3)
    return split_rows(read_manifest(manifest), SplitPlan(0.7, calibration_fraction=0.5), seed=0)


@pytest.fixture(scope="module")
def package_dir(dataset: list[ManifestRow], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("packages") / "anomaly"
    train_anomaly(dataset, out, CONFIG, progress=False)
    return out


@pytest.fixture(scope="module")
def model(package_dir: Path) -> AnomalyModel:
    return AnomalyModel.from_package(package_dir)


def planted(index: int, defect_type: str) -> tuple:
    """The same generated frame without and with a planted defect."""
    clean = generate_sample("disc", sample_rng(99, "disc", index), SIZE, None)
    dirty = generate_sample("disc", sample_rng(99, "disc", index), SIZE, defect_type)
    return clean, dirty


@pytest.mark.parametrize("defect_type", ["spot", "scratch", "crack", "stain", "dent"])
def test_planted_defects_are_found_and_boxed_where_they_were_planted(model: AnomalyModel, defect_type: str) -> None:
    found = raised = 0
    for index in range(1, 7):
        clean, dirty = planted(index, defect_type)
        before, after = model.predict([clean.image, dirty.image], [clean.product_mask, dirty.product_mask])
        assert after.heatmap.shape == dirty.image.shape[:2]
        assert after.normalised_score == pytest.approx(after.score / after.threshold)
        raised += after.score > before.score
        if not after.is_anomalous:
            continue
        found += 1
        assert after.regions, "an anomalous image must have at least one region"
        # The strongest region's box holds the planted defect's centre and stays local.
        ys, xs = np.nonzero(dirty.defect_mask)
        strongest = after.regions[0]
        assert strongest.x1 <= xs.mean() < strongest.x2 and strongest.y1 <= ys.mean() < strongest.y2
        assert strongest.area_px < 0.5 * dirty.product_mask.sum()
    # A model trained on ~45 small generated frames misses some faint defects (thin scratches,
    # tiny spots): most must raise the score, half must cross the threshold, every catch boxed.
    assert raised >= 5, f"only {raised} of 6 planted {defect_type} defects raised the score"
    assert found >= 3, f"only {found} of 6 planted {defect_type} defects found"


def test_normal_frames_mostly_pass(model: AnomalyModel) -> None:
    frames = [planted(i, "spot")[0] for i in range(10, 20)]
    predictions = model.predict([f.image for f in frames], [f.product_mask for f in frames])
    # The threshold is F1-optimal on a small calibration split: it trades a few false alarms for recall.
    assert sum(p.is_anomalous for p in predictions) <= 3


def test_scoring_ignores_what_lies_outside_the_product_mask(model: AnomalyModel) -> None:
    clean, _ = planted(4, "spot")
    cluttered = clean.image.copy()
    background = ~clean.product_mask
    rng = np.random.default_rng(0)
    cluttered[background] = rng.integers(0, 255, (int(background.sum()), 3), dtype=np.uint8)
    masked, whole = model.predict([cluttered, cluttered], [clean.product_mask, None])
    reference = model.predict([clean.image], [clean.product_mask])[0]
    assert whole.score > masked.score
    assert float(masked.heatmap[background].max()) == 0.0
    assert masked.score < 1.5 * reference.score


def test_threshold_is_f1_optimal_with_labelled_anomalies_else_a_normal_quantile(
    dataset: list[ManifestRow], package_dir: Path, tmp_path: Path
) -> None:
    calibrated = load_package(package_dir, "anomaly").manifest
    assert calibrated.thresholds["calibration"]["method"] == "f1_optimal"
    normals_only = [r for r in dataset if r.split == "train"]
    manifest = train_anomaly(normals_only, tmp_path / "normals", CONFIG, progress=False).manifest
    assert manifest.thresholds["calibration"]["method"] == "normal_quantile"
    assert "quantile" in manifest.thresholds["calibration"]["explanation"]
    assert manifest.config["defect_type_labels"] == []
    assert manifest.training_data["defect_probe"] is None  # no defect masks to learn from
    # The plant sets how many good frames a normals-only threshold may flag.
    sensitive_config = CONFIG.model_copy(update={"normal_quantile": 0.5, "normal_margin": -0.1})
    sensitive = train_anomaly(normals_only, tmp_path / "sensitive", sensitive_config, progress=False).manifest
    assert sensitive.thresholds["calibration"]["value"] < manifest.thresholds["calibration"]["value"]
    assert "0.5 quantile" in sensitive.thresholds["calibration"]["explanation"]
    assert "minus a 10% margin" in sensitive.thresholds["calibration"]["explanation"]


def test_regions_carry_labelled_defect_types_when_anomalies_were_labelled(model: AnomalyModel) -> None:
    assert set(model.defect_types.labels) <= {"scratch", "spot", "crack", "stain", "dent"}
    _, dirty = planted(5, "stain")
    prediction = model.predict([dirty.image], [dirty.product_mask])[0]
    for region in prediction.regions:
        assert region.defect_type in model.defect_types.labels
        assert 0.0 < region.type_confidence <= 1.0


def test_labelled_defect_masks_teach_a_probe_that_sharpens_the_heatmap_but_leaves_the_score(
    model: AnomalyModel, package_dir: Path
) -> None:
    learnt = load_package(package_dir, "anomaly").manifest.training_data["defect_probe"]
    assert model.defect_probe is not None and learnt["calibration_anomalies"] >= 4 and learnt["defect_patches"] > 0
    without = model.with_probe(None)
    sharper = 0
    frames = [planted(i, kind)[1] for i in (1, 2, 3) for kind in ("stain", "spot", "crack")]
    for frame in frames:
        probed, plain = (m.predict([frame.image], [frame.product_mask])[0] for m in (model, without))
        assert (probed.score, probed.decision) == (plain.score, plain.decision)
        assert np.all(probed.heatmap >= plain.heatmap - 1e-5)  # the probe only raises
        defect, rest = frame.defect_mask, frame.product_mask & ~frame.defect_mask
        contrast = lambda heatmap: heatmap[defect].mean() / heatmap[rest].mean()  # noqa: E731
        sharper += contrast(probed.heatmap) > contrast(plain.heatmap)
    assert sharper >= 7, f"the probe sharpened only {sharper} of {len(frames)} planted defects"


def test_defect_masks_too_small_for_the_patch_grid_teach_no_probe(
    model: AnomalyModel, dataset: list[ManifestRow], tmp_path: Path
) -> None:
    speck = np.zeros((SIZE, SIZE), bool)
    speck[SIZE // 2, SIZE // 2] = True  # one pixel: no 8 x 8 cell is a quarter covered
    write_image(tmp_path / "speck.png", speck)
    rows = [r.model_copy(update={"defect_mask": str(tmp_path / "speck.png")}) if r.defect_mask else r for r in dataset]
    plan = plan_training(rows, CONFIG)
    assert sum(r.label == "anomaly" and r.defect_mask is not None for r in plan.calibration) >= 4
    assert fit_defect_probe(model, plan, calibration_defects(model, plan)) is None
    labelled = plan_training(dataset, CONFIG)
    assert fit_defect_probe(model, labelled, calibration_defects(model, labelled)) is not None


def test_a_normal_verdict_names_no_regions_even_where_the_probe_raised_the_heatmap(model: AnomalyModel) -> None:
    frames = [planted(i, "spot")[0] for i in range(10, 20)]
    for prediction in model.predict([f.image for f in frames], [f.product_mask for f in frames]):
        assert prediction.is_anomalous or not prediction.regions


def test_package_round_trip_gives_identical_scores(model: AnomalyModel, package_dir: Path) -> None:
    again = AnomalyModel.from_package(package_dir)
    frames = [planted(i, "crack")[1] for i in (6, 7)]
    first = model.predict([f.image for f in frames], [f.product_mask for f in frames])
    second = again.predict([f.image for f in frames], [f.product_mask for f in frames])
    assert [p.score for p in first] == [p.score for p in second]
    assert all(np.array_equal(p.heatmap, q.heatmap) for p, q in zip(first, second))  # the probe survives too
    assert again.version == model.version and again.threshold == model.threshold
    rings = CONFIG.edge_rings
    assert again.edge_profile is not None and again.edge_profile.shape == (rings + 1, rings + 1)


def test_frames_of_several_shapes_score_as_they_would_alone(model: AnomalyModel) -> None:
    clean, dirty = planted(8, "spot")
    tall = dirty.image[:, : SIZE * 2 // 3]
    wide = np.concatenate([clean.image, dirty.image], axis=1)
    together = model.predict([clean.image, tall, wide, dirty.image])
    alone = [model.predict([image])[0] for image in (clean.image, tall, wide, dirty.image)]
    for mixed, single, image in zip(together, alone, (clean.image, tall, wide, dirty.image)):
        assert mixed.heatmap.shape == image.shape[:2]
        assert mixed.score == pytest.approx(single.score, rel=1e-5)


def test_each_images_farthest_patches_are_measured_exactly_after_the_ivf_search(model: AnomalyModel) -> None:
    from lineinspect.shared.models.anomaly.torch_model import level_edges

    assert model.search.centroids is not None, "the test needs a bank large enough for IVF search"
    frames = [planted(i, "crack")[1] for i in (13, 14)]
    prepared = [prepare_image(f.image, model.config, f.product_mask) for f in frames]
    probes = model.search.probes
    model.search.probes = 1  # a coarse search, so that it misses
    try:
        reranked, features = model.patch_distances(prepared)
        plain = model.calibrated(model.threshold, model.levels)
        plain.config = model.config.model_copy(update={"exact_rerank": 0})
        approximate, _ = plain.patch_distances(prepared)
    finally:
        model.search.probes = probes
    k = model.config.exact_rerank
    for after, before, feature in zip(reranked, approximate, features):
        exact = model.search.exact_distances(feature.flatten(1).T).reshape(feature.shape[1:])
        top = level_edges(before, model.edge_profile).flatten().topk(k).indices
        assert torch.allclose(after.flatten()[top], exact.flatten()[top], atol=1e-4)
        rest = torch.ones(after.numel(), dtype=torch.bool)
        rest[top] = False
        assert torch.equal(after.flatten()[rest], before.flatten()[rest])
        assert bool((before.flatten()[top] > exact.flatten()[top] + 1e-4).any())  # the coarse search did miss


def saved_without(package_dir: Path, setting: str, tmp_path: Path) -> Path:
    """A copy of the package as a version before `setting` existed saved it."""
    import shutil

    copy = tmp_path / "old"
    shutil.copytree(package_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["config"][setting]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def test_a_package_saved_before_exact_rerank_scores_as_it_was_calibrated(package_dir: Path, tmp_path: Path) -> None:
    assert AnomalyModel.from_package(saved_without(package_dir, "exact_rerank", tmp_path)).config.exact_rerank == 0


def test_backbone_chunks_give_the_features_of_one_batch(model: AnomalyModel) -> None:
    frames = [planted(i, "spot")[1] for i in (10, 11, 12)]
    prepared = [prepare_image(f.image, model.config, f.product_mask) for f in frames]
    one_batch = batch_by_shape(model.extractor, prepared, chunk=len(prepared))
    chunked = batch_by_shape(model.extractor, prepared, chunk=2)
    for whole, part in zip(one_batch, chunked):
        assert torch.allclose(whole, part, atol=1e-4)


def test_a_package_saved_before_keep_aspect_loads_as_square(package_dir: Path, tmp_path: Path) -> None:
    old = AnomalyModel.from_package(saved_without(package_dir, "resize", tmp_path))
    assert old.config.resize == "square" and old.config.input_shape(100, 300) == (old.config.input_size,) * 2
    clean, _ = planted(9, "spot")
    assert old.predict([clean.image[:, :120]])[0].heatmap.shape == (SIZE, 120)


def test_a_tampered_package_is_refused(package_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(package_dir, copy)
    weights = copy / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelPackageError, match="does not match its sha256"):
        AnomalyModel.from_package(copy)


def test_a_package_of_another_kind_is_refused(package_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(package_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["kind"] = "mask"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelPackageError, match="expected 'anomaly'"):
        AnomalyModel.from_package(copy)
    manifest["kind"] = "teleporter"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelPackageError, match="unknown model kind"):
        load_package(copy)


def test_train_and_evaluate_from_the_command_line(cli, tmp_path: Path) -> None:
    manifest = synthesize_dataset(tmp_path / "data", ["plate"], count=30, seed=8, size=96, anomaly_fraction=0.3)
    code, _, err = cli("datasets", "split", manifest, "--train-normal-fraction", "0.7", "--seed", "1", "--out", tmp_path / "m.jsonl")
    assert code == 0, err
    code, out, err = cli("train", "anomaly", "--manifest", tmp_path / "m.jsonl", "--out", tmp_path / "pkg", "--no-progress")
    assert code == 0, err
    assert "written to" in out and "normal_quantile" in out
    code, out, err = cli(
        "evaluate", "anomaly", "--package", tmp_path / "pkg", "--manifest", tmp_path / "m.jsonl", "--split", "test",
        "--json", tmp_path / "e.json", "--html", tmp_path / "r.html", "--no-progress",
    )
    assert code == 0, err
    figures = json.loads((tmp_path / "e.json").read_text())
    for key in ("image_auroc", "pixel_auroc", "f1", "precision", "recall", "balanced_accuracy", "threshold",
                "n_images", "per_defect_type", "images_per_second"):
        assert key in figures
    assert figures["n_images"] == sum(1 for r in read_manifest(tmp_path / "m.jsonl") if r.split == "test")
    report = (tmp_path / "r.html").read_text()
    assert report.count('class="card ') == figures["n_images"] and "errors first" in report


def test_training_without_train_images_says_what_to_do(cli, tmp_path: Path) -> None:
    manifest = synthesize_dataset(tmp_path / "data", ["disc"], count=4, seed=1, size=64)
    code, _, err = cli("train", "anomaly", "--manifest", manifest, "--out", tmp_path / "pkg")
    assert code == 2 and "datasets split" in err


def test_training_settings_can_be_overridden_and_are_recorded(cli, tmp_path: Path) -> None:
    manifest = synthesize_dataset(tmp_path / "data", ["disc"], count=12, seed=2, size=96, anomaly_fraction=0.0)
    code, _, err = cli("datasets", "split", manifest, "--train-normal-fraction", "1.0", "--seed", "0", "--out", tmp_path / "m.jsonl")
    assert code == 0, err
    code, _, err = cli("train", "anomaly", "--manifest", tmp_path / "m.jsonl", "--out", tmp_path / "pkg",
                       "--set", "taps=4,10,14", "--set", "input_size=160", "--no-progress")
    assert code == 0, err
    config = load_package(tmp_path / "pkg", "anomaly").manifest.config
    assert config["taps"] == [4, 10, 14] and config["input_size"] == 160
    code, _, err = cli("train", "anomaly", "--manifest", tmp_path / "m.jsonl", "--out", tmp_path / "bad", "--set", "colour=blue")
    assert code == 2 and "KEY one of" in err and "taps" in err
    code, _, err = cli("train", "anomaly", "--manifest", tmp_path / "m.jsonl", "--out", tmp_path / "bad", "--set", "input_size=7")
    assert code == 2 and "input_size" in err
