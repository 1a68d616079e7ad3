"""The defect detector: box encoding and decoding are inverses, locations learn the box they
should, non-maximum suppression keeps the best box per defect type, mAP comes out right on
known cases, a detector trained for a few steps on generated images finds a planted box,
packages round-trip, and the CLI trains and evaluates from a Pascal VOC folder."""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from lineinspect.shared.datasets.manifest import ManifestRow, read_manifest
from lineinspect.shared.models.backbone import EncoderFineTuning
from lineinspect.shared.models.detector.augment import augment, mosaic, resized
from lineinspect.shared.models.detector.boxes import (
    ALIGNED_TOP_K,
    assign,
    assign_adaptive,
    assign_task_aligned,
    box_iou,
    centreness,
    decode,
    encode,
    locations,
    mirrored,
    non_maximum_suppression,
    vote_boxes,
)
from lineinspect.shared.models.detector.config import FCOS_SETTINGS, DetectorConfig
from lineinspect.shared.models.detector.inference import Detector, network_outputs
from lineinspect.shared.models.detector.metrics import Box, coco_metrics
from lineinspect.shared.models.detector.torch_model import DetectorNet, complete_iou, detection_loss, distribution_focal_loss, pairwise_iou
from lineinspect.shared.models.detector.training import BoxedImages, split_for_training, train_detector, training_sample, training_sizes
from lineinspect.shared.models.package import save_package
from planted import DEFECT_TYPES, planted_frame
from planted import planted_rows as make_planted_rows

SIZE = 64


def write_voc(folder: Path, count: int, seed: int) -> None:
    """A Pascal VOC layout (ANNOTATIONS/ + IMAGES/, VOC's 1-based inclusive boxes) of planted frames."""
    rng = np.random.default_rng(seed)
    (folder / "ANNOTATIONS").mkdir(parents=True)
    (folder / "IMAGES").mkdir()
    for index in range(count):
        image, box = planted_frame(rng)
        name = f"{box.defect_type}_{index}.jpg"
        cv2.imwrite(str(folder / "IMAGES" / name), image)
        root = ET.Element("annotation")
        ET.SubElement(root, "filename").text = name
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = box.defect_type
        bndbox = ET.SubElement(obj, "bndbox")
        for key, value in (("xmin", box.x1 + 1), ("ymin", box.y1 + 1), ("xmax", box.x2), ("ymax", box.y2)):
            ET.SubElement(bndbox, key).text = str(int(value))
        ET.ElementTree(root).write(folder / "ANNOTATIONS" / f"{Path(name).stem}.xml")


def test_encoding_a_box_and_decoding_it_gives_the_box_back() -> None:
    points = torch.tensor([[10.0, 20.0], [50.0, 40.0], [12.5, 12.5]])
    boxes = torch.tensor([[0.0, 5.0, 30.0, 45.0], [40.0, 30.0, 90.0, 41.0], [10.0, 10.0, 15.0, 15.0]])
    distances = encode(points, boxes)
    assert torch.allclose(distances[0], torch.tensor([10.0, 15.0, 20.0, 25.0]))
    assert torch.allclose(decode(points, distances), boxes)
    # Centre-ness is 1 at the centre of a box and lower off centre.
    assert centreness(distances[2:3]).item() == pytest.approx(1.0)
    assert centreness(distances[:1]).item() == pytest.approx(np.sqrt(10 / 20 * 15 / 25))


def test_locations_near_a_box_centre_learn_it_on_the_level_for_its_size() -> None:
    where = locations(128, (8, 16, 32))
    small = torch.tensor([[20.0, 20.0, 44.0, 44.0]])  # 24 px: the stride-8 level
    targets = assign(where, small, torch.tensor([1]), centre_radius=1.5)
    positive = targets.labels >= 0
    assert positive.any() and set(where.strides[positive].tolist()) == {8.0}
    assert (targets.labels[positive] == 1).all()
    inside = ((where.points[positive] > 20) & (where.points[positive] < 44)).all()
    assert inside and (targets.distances[~positive] == 0).all()
    # A large box is learnt by the coarse level only; where two boxes cover a location, the smaller wins.
    large = torch.tensor([[0.0, 0.0, 128.0, 128.0], [56.0, 56.0, 72.0, 72.0]])
    targets = assign(where, large, torch.tensor([0, 1]), centre_radius=1.5)
    assert set(where.strides[targets.labels == 0].tolist()) == {32.0}
    centre = int(torch.argmin((where.points - 64).abs().sum(1) + (where.strides != 8) * 1e3))
    assert targets.labels[centre] == 1
    # A long thin box holds no cell centre of the coarse level its length asks for: it still
    # gets the locations inside it nearest its centre, on a finer level.
    thin = torch.tensor([[57.0, 4.0, 65.0, 124.0]])
    targets = assign(where, thin, torch.tensor([0]), centre_radius=1.5)
    positive = targets.labels == 0
    assert 1 <= int(positive.sum()) <= 9
    assert (where.points[positive, 0] == 60).all() and (where.strides[positive] == 8).all()
    assert (where.points[positive, 1] - 64).abs().max() <= 40
    assert torch.allclose(decode(where.points[positive], targets.distances[positive]), thin.expand(int(positive.sum()), 4))
    # No boxes: every location is background.
    assert (assign(where, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 1.5).labels == -1).all()


def test_adaptive_assignment_picks_the_level_whose_anchors_fit_the_box() -> None:
    where = locations(128, (8, 16, 32))
    # Anchors are squares of 8 strides: 64, 128 and 256 px.
    small = torch.tensor([[20.0, 20.0, 44.0, 44.0]])
    targets = assign_adaptive(where, small, torch.tensor([1]))
    positive = targets.labels >= 0
    assert set(where.strides[positive].tolist()) == {8.0} and (targets.labels[positive] == 1).all()
    assert ((where.points[positive] > 20) & (where.points[positive] < 44)).all()
    assert torch.allclose(decode(where.points[positive], targets.distances[positive]), small.expand(int(positive.sum()), 4))
    # A 128 px box fits the stride-16 anchors best; the small box inside it keeps its own locations.
    boxes = torch.tensor([[0.0, 0.0, 128.0, 128.0], [56.0, 56.0, 72.0, 72.0]])
    targets = assign_adaptive(where, boxes, torch.tensor([0, 1]))
    assert set(where.strides[targets.labels == 0].tolist()) == {16.0}
    assert set(where.strides[targets.labels == 1].tolist()) == {8.0}
    assert ((where.points[targets.labels == 1] > 56) & (where.points[targets.labels == 1] < 72)).all()
    # Every box is learnt somewhere, a long thin one too; no boxes: all background.
    thin = torch.tensor([[57.0, 4.0, 65.0, 124.0]])
    assert (assign_adaptive(where, thin, torch.tensor([0])).labels == 0).any()
    assert (assign_adaptive(where, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)).labels == -1).all()


def test_task_aligned_assignment_picks_the_locations_that_already_classify_and_box_it_best() -> None:
    where = locations(SIZE, (8, 16, 32))
    box = torch.tensor([[8.0, 8.0, 40.0, 40.0]])
    inside = ((where.points > 8) & (where.points < 40)).all(dim=1)
    # Every location predicts a box shifted by 4 px and a type-1 score of 0.5; three inside the
    # defect predict it exactly, one of them with a surer score; one outside predicts it exactly too.
    predicted = box.expand(len(where.points), 4) + 4.0
    probabilities = torch.full((len(where.points), 2), 0.5)
    exact = torch.nonzero(inside).flatten()[[0, 5, 9]]
    outside = torch.nonzero(~inside).flatten()[0]
    predicted[exact] = box
    predicted[outside] = box
    probabilities[exact[0], 1] = 0.9
    targets = assign_task_aligned(where, box, torch.tensor([1]), probabilities, predicted)
    positive = targets.labels >= 0
    assert int(positive.sum()) == ALIGNED_TOP_K and (targets.labels[positive] == 1).all()
    assert positive[exact].all() and not positive[outside] and inside[positive].all()
    assert torch.allclose(decode(where.points[positive], targets.distances[positive]), box.expand(int(positive.sum()), 4))
    # The best-aligned location gets its IoU (1) as target; the others less, background nothing.
    assert targets.alignment[exact[0]] == pytest.approx(1.0)
    assert (targets.alignment[exact[1:]] < 1).all() and (targets.alignment[positive] > 0).all()
    assert (targets.alignment[~positive] == 0).all()
    # The alignment replaces the IoU as the class target: a location boxing the defect exactly
    # (IoU 1) but less sure of its type than the best one learns a score of 0.5 / 0.9 of it.
    assert targets.alignment[exact[1]] == pytest.approx(0.5 / 0.9)

    def class_loss(probability: float) -> float:
        logits = torch.full((1, len(where.points), 2), -20.0)
        logits[0, exact[1], 1] = torch.logit(torch.tensor(probability))
        outputs = (logits, encode(where.points, predicted)[None], torch.zeros(1, len(where.points)))
        return float(detection_loss(outputs, [targets], where, quality_focal=True)["classes"])

    assert min([0.3, 0.45, 0.55, 0.7, 0.9, 1 - 1e-6], key=class_loss) == 0.55
    # No boxes: all background, nothing to align.
    empty = assign_task_aligned(where, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), probabilities, predicted)
    assert (empty.labels == -1).all() and (empty.alignment == 0).all()


def test_a_mosaic_keeps_the_boxes_of_its_four_pieces_on_their_defects() -> None:
    """Four frames of one grey each, with a small box of a brighter grey and one box over the
    whole frame: in the mosaic every box lies on its own frame's pixels, small boxes are
    cut to their piece, and each piece carries its whole-frame box."""
    size = 96
    samples = []
    for index in range(4):
        image = np.full((size, size, 3), 40 * index + 20, np.uint8)
        image[30:60, 40:70] = 40 * index + 30
        boxes = np.array([[40, 30, 70, 60], [0, 0, size, size]], np.float32)
        samples.append((image, boxes, np.array([2 * index, 2 * index + 1])))
    for seed in range(20):
        frame, boxes, labels = mosaic(samples, np.random.default_rng(seed))
        assert frame.shape == (size, size, 3) and boxes.shape == (len(labels), 4)
        assert (boxes >= 0).all() and (boxes <= size).all() and (boxes[:, 2:] - boxes[:, :2] >= 2).all()
        assert sorted(labels[labels % 2 == 1].tolist()) == [1, 3, 5, 7]
        for box, label in zip(boxes.astype(int), labels):
            source = int(label) // 2
            inside = frame[box[1] : box[3], box[0] : box[2], 0]
            if label % 2:
                assert set(np.unique(inside)) <= {40 * source + 20, 40 * source + 30}
            else:
                assert (inside == 40 * source + 30).all()


def test_augmented_frames_keep_their_box_on_the_defect_in_every_orientation() -> None:
    """A bright rectangle twice as wide as tall, with its box: every augmented variant
    (flips, zoom, and with transpose on, mirroring about the diagonal) still boxes the
    rectangle, and with transpose on the rectangle is also seen lying on its side. Each flip
    comes only in the share asked for."""
    size = 96
    image = np.full((size, size, 3), 30, np.uint8)
    image[38:58, 28:68] = 230  # 40 wide, 20 tall: inside the frame after any zoom
    boxes = np.array([[28, 38, 68, 58]], np.float32)
    shapes = set()
    for seed in range(60):
        frame, moved, labels = augment(image, boxes, np.array([3]), np.random.default_rng(seed), transpose=0.5)
        assert frame.shape == image.shape and labels.tolist() == [3]
        x1, y1, x2, y2 = np.round(moved[0]).astype(int)
        bright = frame[..., 0] > frame[..., 0].min() + 60
        rows, cols = np.nonzero(bright)
        assert abs(cols.min() - x1) <= 1 and abs(cols.max() + 1 - x2) <= 1
        assert abs(rows.min() - y1) <= 1 and abs(rows.max() + 1 - y2) <= 1
        shapes.add("wide" if x2 - x1 > y2 - y1 else "tall")
    assert shapes == {"wide", "tall"}
    for seed in range(20):
        _, moved, _ = augment(image, boxes, np.array([3]), np.random.default_rng(seed))
        assert moved[0, 2] - moved[0, 0] > moved[0, 3] - moved[0, 1]  # no transpose by default
    # Flips come only in the shares asked for: the frame's bright top-left quarter shows in the
    # corner the flips put it in (a zoom-in keeps every corner's pixel from its own quarter).
    top_left_lit = np.zeros((size, size, 3), np.uint8)
    top_left_lit[: size // 2, : size // 2] = 200
    no_box = np.zeros((0, 4), np.float32)
    for left_right, up_down in ((0.0, 0.0), (0.0, 0.5), (0.5, 0.0), (0.5, 0.5)):
        corners = set()
        for seed in range(40):
            frame = augment(top_left_lit, no_box, np.zeros(0), np.random.default_rng(seed), left_right=left_right, up_down=up_down)[0]
            lit = [(top, left) for top in (True, False) for left in (True, False) if frame[0 if top else -1, 0 if left else -1, 0] > 100]
            assert len(lit) == 1
            corners.add(lit[0])
        assert {left for _, left in corners} == ({True, False} if left_right else {True})
        assert {top for top, _ in corners} == ({True, False} if up_down else {True})


def test_training_frames_are_mosaics_in_the_share_asked_for() -> None:
    images = np.stack([np.full((32, 32, 3), 50 * index, np.uint8) for index in range(4)])
    train = BoxedImages([], images, [np.array([[4, 4, 28, 28]], np.float32)] * 4, [np.array([index]) for index in range(4)])
    rng = np.random.default_rng(0)
    plain = [training_sample(train, 1, 0.0, rng) for _ in range(20)]
    assert all(np.shares_memory(frame, images[1]) and labels.tolist() == [1] for frame, _, labels in plain)
    mixed = [training_sample(train, 1, 0.5, rng) for _ in range(200)]
    mosaics = [frame for frame, _, _ in mixed if not np.shares_memory(frame, images)]
    assert 70 <= len(mosaics) <= 130
    # A mosaic shows image 1 in its top-left piece, and pieces of the others elsewhere.
    assert all(frame[0, 0, 0] == 50 for frame in mosaics)
    assert any(len(np.unique(frame)) > 1 for frame in mosaics)


def test_multi_scale_training_resizes_frames_and_boxes_alike_to_multiples_of_32() -> None:
    assert training_sizes(DetectorConfig(input_size=320)) == [320]
    assert training_sizes(DetectorConfig(input_size=320, multi_scale=0.2)) == [256, 288, 320, 352, 384]
    assert training_sizes(DetectorConfig(input_size=64, multi_scale=0.6)) == [32, 64, 96]
    image = np.zeros((64, 64, 3), np.uint8)
    image[16:32, 8:40] = 255
    boxes = np.array([[8, 16, 40, 32]], np.float32)
    for side in (32, 96):
        frame, scaled, labels = resized((image, boxes, np.array([1])), side)
        x1, y1, x2, y2 = scaled[0].round().astype(int)
        assert frame.shape == (side, side, 3) and labels.tolist() == [1]
        assert (frame[y1:y2, x1:x2] > 127).all() and frame[frame > 127].size == (x2 - x1) * (y2 - y1) * 3


def test_non_maximum_suppression_keeps_the_best_box_of_each_defect_type() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 10, 5.5]], float)
    scores = np.array([0.6, 0.9, 0.5, 0.3, 0.8])
    classes = np.array([0, 0, 1, 0, 0])
    kept = non_maximum_suppression(boxes, scores, classes, iou_threshold=0.5, max_kept=10)
    # Box 0 overlaps the better box 1 (IoU 0.68): dropped. Box 2 is another type; box 3 is elsewhere;
    # box 4 overlaps box 1 by IoU 0.40 < 0.5: kept. Best first.
    assert kept.tolist() == [1, 4, 2, 3]
    assert box_iou(boxes[[0]], boxes[[1]])[0, 0] == pytest.approx(81 / 119)
    assert non_maximum_suppression(boxes, scores, classes, 0.5, max_kept=2).tolist() == [1, 4]
    assert non_maximum_suppression(np.zeros((0, 4)), np.zeros(0), np.zeros(0), 0.5, 10).tolist() == []


def test_box_voting_moves_each_kept_box_to_the_weighted_mean_of_its_overlapping_neighbours() -> None:
    # The best box sits 2 px left of a defect at x 10..30, a weaker one of its type 2 px right (IoU 2/3).
    boxes = np.array([[8, 0, 28, 20], [12, 0, 32, 20], [10, 0, 30, 20], [60, 60, 80, 80], [40, 0, 60, 20]], float)
    scores = np.array([0.9, 0.6, 0.5, 0.8, 0.9])
    classes = np.array([0, 0, 1, 0, 0])
    kept = non_maximum_suppression(boxes, scores, classes, iou_threshold=0.5, max_kept=10)
    assert kept.tolist() == [0, 4, 3, 2]
    voted = vote_boxes(boxes, scores, classes, kept, iou_threshold=0.5)
    # Box 0 moves towards box 1, weighted by score x IoU (0.9 x 1 against 0.6 x 2/3); box 2 is
    # another defect type and does not vote.
    weights = np.array([0.9, 0.6 * 2 / 3])
    assert voted[0] == pytest.approx(weights @ boxes[:2] / weights.sum())
    # The others have no neighbour of their type above IoU 0.5: they stay where they were.
    assert voted[1:] == pytest.approx(boxes[[4, 3, 2]])
    # A stricter overlap rule leaves box 0 alone too.
    assert vote_boxes(boxes, scores, classes, kept, iou_threshold=0.7)[0] == pytest.approx(boxes[0])


def test_flip_test_averages_two_looks_so_a_mirrored_frame_gets_mirrored_outputs() -> None:
    config = DetectorConfig(input_size=SIZE, flip_test=True)
    torch.manual_seed(0)
    network = DetectorNet.for_config(2, config, pretrained=False).eval()
    for conv in (network.class_logits, network.box_distances):
        torch.nn.init.normal_(conv.weight, std=0.3)
    where = locations(SIZE, network.strides)
    back = mirrored(where, "x")
    assert torch.equal(back[back], torch.arange(len(back)))
    assert torch.allclose(where.points[back, 0], SIZE - where.points[:, 0]) and torch.equal(where.points[back, 1], where.points[:, 1])
    assert torch.allclose(where.points[mirrored(where, "y"), 1], SIZE - where.points[:, 1])
    frame = torch.rand(1, 3, SIZE, SIZE)

    def looks(config: DetectorConfig) -> tuple[torch.Tensor, ...]:
        with torch.inference_mode():
            return network_outputs(network, frame, where, config), network_outputs(network, frame.flip(3), where, config)

    (classes, distances, _), (classes_flipped, distances_flipped, _) = looks(config)
    assert torch.allclose(classes, classes_flipped[:, back], atol=1e-4)
    assert torch.allclose(distances, distances_flipped[:, back][..., [2, 1, 0, 3]], atol=1e-3)
    # One look alone is not symmetric.
    (classes, _, _), (classes_flipped, _, _) = looks(config.model_copy(update={"flip_test": False}))
    assert not torch.allclose(classes, classes_flipped[:, back], atol=1e-2)


def test_quality_focal_class_scores_learn_the_iou_of_their_box() -> None:
    where = locations(SIZE, (8, 16, 32))
    box = torch.tensor([[16.0, 16.0, 48.0, 48.0]])
    targets = [assign(where, box, torch.tensor([1]), centre_radius=1.5)]
    positive = targets[0].labels >= 0
    assert positive.any()
    # Every positive location predicts the box shifted right by a quarter of its width: IoU 0.6.
    shifted = targets[0].distances.clone()
    shifted[:, 0] -= 8
    shifted[:, 2] += 8
    distances = torch.where(positive[:, None], shifted, torch.zeros_like(shifted))[None]
    centres = torch.zeros(1, len(positive))

    def class_loss(probability: float, quality_focal: bool) -> float:
        logits = torch.full((1, len(positive), 2), -20.0)
        logits[0, positive, 1] = torch.logit(torch.tensor(probability))
        return float(detection_loss((logits, distances, centres), targets, where, quality_focal=quality_focal)["classes"])

    scores = [0.3, 0.5, 0.6, 0.7, 0.9]
    assert min(scores, key=lambda p: class_loss(p, quality_focal=True)) == 0.6
    # Plain focal loss pushes the score of a positive location towards 1 whatever its box.
    assert min(scores, key=lambda p: class_loss(p, quality_focal=False)) == 0.9


def test_score_weighting_fits_hardest_the_boxes_the_network_is_surest_of() -> None:
    where = locations(SIZE, (8, 16, 32))
    targets = [assign(where, torch.tensor([[16.0, 16.0, 48.0, 48.0]]), torch.tensor([1]), centre_radius=1.5)]
    positive = torch.nonzero(targets[0].labels >= 0).flatten()
    assert len(positive) > 2
    # Every positive location predicts its box exactly, except one that is a quarter box off.
    distances = targets[0].distances.clone()[None]
    off = int(positive[0])
    distances[0, off, 0] -= 8
    distances[0, off, 2] += 8
    centres = torch.zeros(1, len(targets[0].labels))

    def box_loss(off_probability: float, box_weighting: str) -> float:
        logits = torch.full((1, len(targets[0].labels), 2), -20.0)
        logits[0, positive, 1] = 0.0
        logits[0, off, 1] = torch.logit(torch.tensor(off_probability))
        losses = detection_loss((logits, distances, centres), targets, where, box_weighting=box_weighting)
        return float(losses["boxes"])

    # GFL: the off box weighs by its own class probability (the others are at 0.5).
    assert box_loss(0.9, "score") > box_loss(0.5, "score") > box_loss(0.1, "score") > 0
    # FCOS / ATSS: by its place in the box, whatever the class scores say.
    assert box_loss(0.9, "centreness") == pytest.approx(box_loss(0.1, "centreness"))
    with pytest.raises(ValueError, match="box_weighting"):
        box_loss(0.5, "area")


def test_complete_iou_also_counts_the_centre_gap_and_the_shape_gap() -> None:
    truth = torch.tensor([[0.0, 0.0, 20.0, 20.0]] * 4)
    predicted = torch.tensor([
        [0.0, 0.0, 20.0, 20.0],  # the truth
        [5.0, 5.0, 15.0, 15.0],  # inside it, same centre and shape: IoU 0.25
        [0.0, 0.0, 10.0, 10.0],  # inside it in a corner: IoU 0.25, centre 5 px off each way
        [0.0, 7.5, 20.0, 12.5],  # same centre, a flat strip: IoU 0.25
    ])
    iou, giou = pairwise_iou(predicted, truth)
    ciou = complete_iou(predicted, truth, iou)
    assert iou.tolist() == pytest.approx([1.0, 0.25, 0.25, 0.25])
    # GIoU cannot tell these apart: each lies inside the truth.
    assert giou.tolist() == pytest.approx(iou.tolist())
    assert ciou[0] == pytest.approx(1.0) and ciou[1] == pytest.approx(0.25)
    # Centre gap (50 px^2) over the enclosing box's squared diagonal (800 px^2).
    assert ciou[2] == pytest.approx(0.25 - 50 / 800)
    assert ciou[3] < 0.25


def test_the_ciou_box_loss_is_larger_for_an_off_centre_box() -> None:
    where = locations(SIZE, (8, 16, 32))
    targets = [assign(where, torch.tensor([[16.0, 16.0, 48.0, 48.0]]), torch.tensor([1]), centre_radius=1.5)]
    positive = targets[0].labels >= 0
    # Every positive location predicts the box shrunk to its top-left quarter.
    shrunk = targets[0].distances.clone()
    shrunk[:, 2:] -= 16
    distances = torch.where(positive[:, None], shrunk, torch.zeros_like(shrunk))[None]
    logits = torch.zeros(1, len(positive), 2)
    centres = torch.zeros(1, len(positive))

    def box_loss(box_overlap: str) -> float:
        return float(detection_loss((logits, distances, centres), targets, where, box_overlap=box_overlap)["boxes"])

    assert box_loss("giou") == pytest.approx(0.75, abs=1e-4)
    assert box_loss("ciou") == pytest.approx(0.75 + 128 / 2048, abs=1e-4)
    with pytest.raises(ValueError, match="box_overlap"):
        box_loss("diou")


def test_distance_bins_learn_each_side_as_a_distribution_around_the_true_distance() -> None:
    # A side 2.25 strides away: the loss is lowest with 3/4 of the mass on bin 2 and 1/4 on bin 3.
    def side_loss(mass: dict[int, float]) -> float:
        probabilities = torch.full((1, 4, 9), 1e-6)
        for index, share in mass.items():
            probabilities[..., index] = share
        return float(distribution_focal_loss(probabilities.log(), torch.full((1, 4), 2.25)))

    assert side_loss({2: 0.75, 3: 0.25}) < min(side_loss({2: 1.0}), side_loss({2: 0.5, 3: 0.5}), side_loss({1: 0.75, 2: 0.25}))
    # The network's distance is the expectation of the bins, in pixels.
    network = DetectorNet(2, width=16, head_convs=1, pretrained=False, distance_bins=8).eval()
    with torch.no_grad():
        classes, distances, centres, side_logits = network.forward_for_training(torch.zeros(1, 3, SIZE, SIZE))
        plain = network(torch.zeros(1, 3, SIZE, SIZE))
    assert side_logits.shape == (*distances.shape, 9) and torch.equal(plain[1], distances)
    strides = locations(SIZE, network.strides).strides
    expected = (side_logits.softmax(-1) * torch.arange(9.0)).sum(-1) * strides[None, :, None]
    assert torch.allclose(distances, expected, atol=1e-4)


def test_a_bottom_up_path_carries_fine_detail_to_the_coarse_levels() -> None:
    torch.manual_seed(0)
    for pyramid in ("fpn", "pan"):
        network = DetectorNet.for_config(2, DetectorConfig(input_size=SIZE, fpn_channels=16, head_convs=1, pyramid=pyramid), pretrained=False).eval()
        features = [torch.randn(1, c, SIZE // s, SIZE // s) for c, s in zip(network.encoder.channels(), network.strides)]
        nudged = [features[0] + torch.randn_like(features[0]), *features[1:]]
        with torch.no_grad():
            levels, nudged_levels = network.pyramid(tuple(features)), network.pyramid(tuple(nudged))
        assert [level.shape[-1] for level in levels] == [SIZE // s for s in network.strides]
        # The top-down pyramid only passes coarse context down; the bottom-up path passes fine detail up.
        assert torch.equal(levels[-1], nudged_levels[-1]) == (pyramid == "fpn")


def test_a_package_records_its_pyramid_and_loads_as_it_was_built(tmp_path: Path) -> None:
    config = DetectorConfig(input_size=SIZE, fpn_channels=16, head_convs=1, pyramid="pan")
    network = DetectorNet.for_config(2, config, pretrained=False)
    package = save_package(tmp_path / "pan", "detector", network.state_dict(), input_size=[SIZE, SIZE],
                           preprocessing={"classes": ["scratch", "spot"]}, config=config.model_dump(mode="json"), thresholds={"confidence": 0.3})
    detector = Detector.from_package(package.path)
    assert detector.config.pyramid == "pan"
    frame = planted_frame(np.random.default_rng(3))[0]
    assert len(detector.predict([frame], all_boxes=True)) == 1


def test_fine_tuning_freezes_the_stem_and_the_blocks_asked_for_and_trains_the_rest_at_the_encoder_share() -> None:
    for frozen_blocks in (3, 1):
        config = DetectorConfig(input_size=SIZE, fpn_channels=16, head_convs=1, frozen_encoder_blocks=frozen_blocks, encoder_learning_rate_share=0.5)
        network = DetectorNet.for_config(2, config, pretrained=False)
        tuning = EncoderFineTuning(network, 1e-2, encoder_share=config.encoder_learning_rate_share, frozen_blocks=config.frozen_encoder_blocks)
        encoder = network.encoder
        rate_of = {id(p): group["lr"] for group in tuning.optimiser.param_groups for p in group["params"]}
        assert not any(id(p) in rate_of or p.requires_grad for p in encoder.stem.parameters())
        for index, block in enumerate(encoder.blocks):
            expected = None if index < frozen_blocks else pytest.approx(5e-3)
            assert [rate_of.get(id(p)) for p in block.parameters()] == [expected] * len(list(block.parameters()))
        assert {rate_of[id(p)] for p in network.class_logits.parameters()} == {1e-2}


def test_map_is_one_for_perfect_boxes_and_falls_for_misplaced_ones() -> None:
    truths = [[Box(10, 10, 50, 50, "spot")], [Box(0, 0, 100, 20, "scratch"), Box(60, 60, 90, 90, "spot")]]
    perfect = [[Box(b.x1, b.y1, b.x2, b.y2, b.defect_type, score=0.9) for b in image] for image in truths]
    figures = coco_metrics(truths, perfect, DEFECT_TYPES)
    assert figures["map50"] == pytest.approx(1.0) and figures["map50_95"] == pytest.approx(1.0)
    assert figures["ap_per_class"]["spot"]["truths"] == 2
    # Shifted by a quarter of their width: IoU 0.6 -> found at 0.5, missed at stricter IoUs.
    shifted = [[Box(b.x1 + (b.x2 - b.x1) / 4, b.y1, b.x2 + (b.x2 - b.x1) / 4, b.y2, b.defect_type, 0.9) for b in image] for image in truths]
    figures = coco_metrics(truths, shifted, DEFECT_TYPES)
    assert figures["map50"] == pytest.approx(1.0) and 0.1 < figures["map50_95"] < 0.5
    # The wrong defect type finds nothing; no predictions at all give 0, not an error.
    swapped = [[Box(b.x1, b.y1, b.x2, b.y2, "scratch" if b.defect_type == "spot" else "spot", 0.9) for b in image] for image in truths]
    assert coco_metrics(truths, swapped, DEFECT_TYPES)["map50"] == pytest.approx(0.0)
    assert coco_metrics(truths, [[], []], DEFECT_TYPES)["map50"] == 0.0


@pytest.fixture(scope="module")
def planted_rows(tmp_path_factory: pytest.TempPathFactory) -> list[ManifestRow]:
    return make_planted_rows(tmp_path_factory.mktemp("planted"), 64, np.random.default_rng(0))


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [{}, FCOS_SETTINGS, {"assignment": "aligned"}],
    ids=["defaults", "fcos", "task-aligned"],
)
def test_a_detector_trained_for_a_few_steps_finds_a_planted_box(planted_rows: list[ManifestRow], tmp_path: Path, options: dict) -> None:
    config = DetectorConfig(input_size=SIZE, batch_size=8, epochs=60, patience=60, learning_rate=4e-3, validation_fraction=0.25, **options)
    package = train_detector(planted_rows, tmp_path / "detector", config, progress=False, max_steps=300)
    detector = Detector.from_package(package.path)
    rng = np.random.default_rng(99)
    frames = [planted_frame(rng) for _ in range(12)]
    found = 0
    for (image, box), predicted in zip(frames, detector.predict([image for image, _ in frames], all_boxes=True)):
        best = predicted[0] if predicted else None
        if best and best.defect_type == box.defect_type and box_iou([[best.x1, best.y1, best.x2, best.y2]], [[box.x1, box.y1, box.x2, box.y2]])[0, 0] >= 0.5:
            found += 1
    assert found >= 10, f"the best box matched the planted defect in {found} of 12 frames"
    # The package round-trips: a second load gives the same boxes.
    again = Detector.from_package(package.path).predict([frames[0][0]], all_boxes=True)[0]
    assert [(b.x1, b.score, b.defect_type) for b in again] == [(b.x1, b.score, b.defect_type) for b in detector.predict([frames[0][0]], all_boxes=True)[0]]
    assert package.manifest.preprocessing["classes"] == ["scratch", "spot"]
    assert 0 < package.manifest.thresholds["confidence"] < 1


def test_a_detector_trained_on_batches_of_several_sizes_runs_at_its_input_size(planted_rows: list[ManifestRow], tmp_path: Path) -> None:
    config = DetectorConfig(input_size=SIZE, batch_size=8, multi_scale=0.6, validation_fraction=0.25)
    package = train_detector(planted_rows, tmp_path / "detector", config, progress=False, max_steps=12)
    assert package.manifest.config["multi_scale"] == 0.6 and package.manifest.input_size == [SIZE, SIZE]
    assert len(Detector.from_package(package.path).predict([planted_frame(np.random.default_rng(1))[0]], all_boxes=True)) == 1


def test_a_package_saved_before_the_gfl_options_loads_as_plain_fcos(tmp_path: Path) -> None:
    network = DetectorNet(2, width=16, head_convs=1, pretrained=False)
    old_config = DetectorConfig(input_size=SIZE, fpn_channels=16, head_convs=1).model_dump(mode="json")
    for key in FCOS_SETTINGS:
        del old_config[key]
    package = save_package(tmp_path / "old", "detector", network.state_dict(), input_size=[SIZE, SIZE],
                           preprocessing={"classes": ["scratch", "spot"]}, config=old_config, thresholds={"confidence": 0.3})
    detector = Detector.from_package(package.path)
    assert {key: getattr(detector.config, key) for key in FCOS_SETTINGS} == FCOS_SETTINGS
    assert isinstance(detector.predict([np.zeros((SIZE, SIZE, 3), np.uint8)], all_boxes=True)[0], list)


def test_validation_is_held_out_of_train_per_defect_type(planted_rows: list[ManifestRow]) -> None:
    train, validation = split_for_training(planted_rows, 0.25, seed=0)
    assert len(train) + len(validation) == len(planted_rows)
    assert {r.path for r in train}.isdisjoint(r.path for r in validation)
    assert {r.defect_type for r in validation} == set(DEFECT_TYPES)


@pytest.mark.slow
def test_train_and_evaluate_a_detector_from_a_voc_folder_on_the_command_line(cli, tmp_path: Path) -> None:
    write_voc(tmp_path / "voc", count=24, seed=3)
    manifest, split = tmp_path / "voc.jsonl", tmp_path / "split.jsonl"
    assert cli("datasets", "import", "voc", tmp_path / "voc", "--image-type", "steel", "--out", manifest)[0] == 0
    code, _, err = cli("datasets", "split", manifest, "--train-normal-fraction", "0.8", "--train-anomaly-fraction", "0.75",
                       "--seed", "0", "--out", split)
    assert code == 0, err
    code, out, err = cli("train", "detector", "--manifest", split, "--out", tmp_path / "pkg", "--set", "input_size=64",
                         "--set", "epochs=2", "--set", "batch_size=8", "--no-progress")
    assert code == 0, err
    assert "validation mAP@0.5" in out
    code, out, err = cli("evaluate", "detector", "--package", tmp_path / "pkg", "--manifest", split,
                         "--json", tmp_path / "e.json", "--html", tmp_path / "r.html", "--no-progress")
    assert code == 0, err
    figures = json.loads((tmp_path / "e.json").read_text())
    assert {"map50", "map50_95", "ap_per_class", "images_per_second"} <= set(figures)
    test_rows = [row for row in read_manifest(split) if row.split == "test"]
    assert figures["n_images"] == len(test_rows) >= 4 and set(figures["ap_per_class"]) == set(DEFECT_TYPES)
    assert 0.0 <= figures["map50_95"] <= figures["map50"] <= 1.0
    html = (tmp_path / "r.html").read_text()
    assert html.count('class="card') == len(test_rows) and "mAP@0.5" in html
    assert figures["inference_overrides"] == {}
    # Inference settings can be tried on the saved package; the JSON says which were changed.
    code, _, err = cli("evaluate", "detector", "--package", tmp_path / "pkg", "--manifest", split, "--set", "nms_iou=0.65",
                       "--set", "max_detections=1", "--json", tmp_path / "e1.json", "--html", tmp_path / "r1.html", "--no-progress")
    assert code == 0, err
    assert "max_detections=1, nms_iou=0.65" in (tmp_path / "r1.html").read_text()
    assert "inference settings changed" not in html
    strict = json.loads((tmp_path / "e1.json").read_text())
    assert strict["inference_overrides"] == {"max_detections": 1, "nms_iou": 0.65}
    assert strict["n_images"] == figures["n_images"]
    # What training fixed cannot be changed at evaluation: the error says what can.
    code, _, err = cli("evaluate", "detector", "--package", tmp_path / "pkg", "--manifest", split, "--set", "input_size=96",
                       "--no-progress")
    assert code != 0 and "input_size" in err and "nms_iou" in err
    # A package of another kind is refused with a clear error.
    code, _, err = cli("evaluate", "detector", "--package", tmp_path / "voc", "--manifest", split, "--no-progress")
    assert code != 0 and "not a model package" in err
