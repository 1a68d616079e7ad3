"""Training the defect detector on images with labelled boxes, with augmentation and early
stopping on validation mAP@0.5:0.95; the deployed confidence is the F1-best on validation."""

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lineinspect.shared.datasets.manifest import ManifestRow
from lineinspect.shared.errors import DatasetError
from lineinspect.shared.images import read_image
from lineinspect.shared.logs import get_logger
from lineinspect.shared.models.backbone import EncoderFineTuning, resize_to, square_input_preprocessing, to_input_tensor
from lineinspect.shared.models.detector.augment import Sample, augment, mosaic, resized
from lineinspect.shared.models.detector.boxes import (
    Locations,
    Targets,
    assign,
    assign_adaptive,
    assign_task_aligned,
    decode,
    locations,
)
from lineinspect.shared.models.detector.config import DetectorConfig
from lineinspect.shared.models.detector.inference import confidence_rule, network_outputs, postprocess, to_frame_boxes
from lineinspect.shared.models.detector.metrics import Box, coco_metrics, image_errors
from lineinspect.shared.models.detector.torch_model import DetectorNet, detection_loss
from lineinspect.shared.models.package import ModelPackage, save_package
from lineinspect.shared.models.precision import autocast, float32_outputs, train_depthwise_in_float32
from lineinspect.shared.models.schedule import EarlyStopping

GRADIENT_CLIP = 10.0
# Mosaics stop for the last part of training, so the end fits whole frames as they come (YOLOX, YOLOv8).
MOSAIC_ENDS_AT = 0.8
CONFIDENCE_GRID = np.round(np.arange(0.1, 0.91, 0.05), 2)
# The task-aligned assignment learns from the network's own predictions, which mean nothing at
# first: ATSS assigns until this share of training (TOOD and PP-YOLOE start on a static rule too).
ALIGNED_AFTER = 0.15


@dataclass(frozen=True)
class BoxedImages:
    """Images at input size with their boxes scaled to it."""

    rows: list[ManifestRow]
    images: np.ndarray  # (N, S, S, 3) uint8
    boxes: list[np.ndarray]  # per image (M, 4) float32 in input pixels
    labels: list[np.ndarray]  # per image (M,) class index

    def sample(self, index: int) -> Sample:
        return self.images[index], self.boxes[index], self.labels[index]

    def truths(self, class_names: Sequence[str]) -> list[list[Box]]:
        return [
            [Box(*(float(v) for v in box), defect_type=class_names[int(label)]) for box, label in zip(boxes, labels)]
            for boxes, labels in zip(self.boxes, self.labels)
        ]


def class_names_of(rows: Sequence[ManifestRow]) -> list[str]:
    names = sorted({box.defect_type for row in rows for box in row.boxes})
    if not names:
        raise DatasetError(
            "no labelled boxes in the training rows; a detector learns from boxes "
            "(import them with `lineinspect datasets import voc`)"
        )
    return names


def load_boxed(rows: Sequence[ManifestRow], size: int, class_names: Sequence[str]) -> BoxedImages:
    index = {name: i for i, name in enumerate(class_names)}
    images, boxes, labels = [], [], []
    for row in rows:
        image = read_image(row.path)
        height, width = image.shape[:2]
        scale = np.array([size / width, size / height, size / width, size / height], np.float32)
        images.append(resize_to(image, size, size))
        known = [b for b in row.boxes if b.defect_type in index]
        boxes.append(np.array([[b.x1, b.y1, b.x2, b.y2] for b in known], np.float32).reshape(-1, 4) * scale)
        labels.append(np.array([index[b.defect_type] for b in known], np.int64))
    return BoxedImages(list(rows), np.stack(images), boxes, labels)


def split_for_training(rows: Sequence[ManifestRow], validation_fraction: float, seed: int) -> tuple[list[ManifestRow], list[ManifestRow]]:
    """Rows of split 'train', and of split 'validation' or, when there is none, a seeded share
    of train held out (each defect type in proportion)."""
    train = [row for row in rows if row.split == "train" and row.label != "unknown"]
    validation = [row for row in rows if row.split == "validation" and row.label != "unknown"]
    if len(train) < 2:
        raise DatasetError(
            f"{len(train)} labelled images in split 'train'; need at least 2 "
            "(split with `lineinspect datasets split ... --train-anomaly-fraction 0.8`)"
        )
    if not validation:
        rng = np.random.default_rng(seed)
        held: set[int] = set()
        groups: dict[str, list[int]] = {}
        for i, row in enumerate(train):
            groups.setdefault(row.defect_type or "", []).append(i)
        for _, members in sorted(groups.items()):
            count = int(round(len(members) * validation_fraction))
            held.update(members[k] for k in rng.permutation(len(members))[:count])
        if not held:
            held = {int(rng.integers(len(train)))}
        validation = [row for i, row in enumerate(train) if i in held]
        train = [row for i, row in enumerate(train) if i not in held]
    return train, validation


@torch.inference_mode()
def predict_boxed(network: DetectorNet, data: BoxedImages, where: Locations, config: DetectorConfig,
                  class_names: Sequence[str]) -> list[list[Box]]:
    network.eval()
    predictions: list[list[Box]] = []
    for start in range(0, len(data.images), config.batch_size):
        batch = to_input_tensor(list(data.images[start : start + config.batch_size]))
        with autocast():
            outputs = network_outputs(network, batch.contiguous(memory_format=torch.channels_last), where, config)
        size = config.input_size
        predictions += [to_frame_boxes(raw, class_names, size, size, size) for raw in postprocess(outputs, where, config)]
    return predictions


def best_confidence(truths: Sequence[Sequence[Box]], predictions: Sequence[Sequence[Box]]) -> tuple[float, float]:
    """The confidence with the best box F1 (same type, IoU >= 0.5) and that F1."""
    best = (0.3, -1.0)
    for confidence in CONFIDENCE_GRID:
        totals = Counter()
        for truth, predicted in zip(truths, predictions):
            totals.update(image_errors(truth, predicted, float(confidence)))
        f1 = 2 * totals["found"] / max(2 * totals["found"] + totals["missed"] + totals["false"], 1)
        if f1 > best[1]:
            best = (float(confidence), f1)
    return best


class WeightAverage:
    """Exponential moving average of a network's weights and batch-norm statistics, its decay
    ramping up from 0 so the first steps' random head does not linger (as YOLOv5 does)."""

    RAMP_STEPS = 300

    def __init__(self, network: torch.nn.Module, decay: float) -> None:
        def average(averaged: torch.Tensor, current: torch.Tensor, updates: torch.Tensor | int) -> torch.Tensor:
            weight = decay * (1 - math.exp(-int(updates) / self.RAMP_STEPS))
            return averaged * weight + current * (1 - weight)

        self.averaged = torch.optim.swa_utils.AveragedModel(network, avg_fn=average, use_buffers=True)

    def update(self, network: torch.nn.Module) -> None:
        self.averaged.update_parameters(network)

    @property
    def network(self) -> DetectorNet:
        return self.averaged.module


def training_progress(step: int, total_steps: int, stopping: EarlyStopping) -> float:
    """How far training is, 0 to 1, by whichever runs out first: the steps or the time budget."""
    return min(1.0, max(step / total_steps, stopping.seconds / 60 / stopping.max_minutes))


def training_sample(train: BoxedImages, index: int, mosaic_share: float, rng: np.random.Generator) -> Sample:
    """Image `index` with its boxes, or with that share a mosaic of it and three random others."""
    if mosaic_share > 0 and rng.random() < mosaic_share:
        return mosaic([train.sample(index), *(train.sample(int(j)) for j in rng.integers(len(train.images), size=3))], rng)
    return train.sample(index)


def training_sizes(config: DetectorConfig) -> list[int]:
    """Input sizes a training batch may be resized to: multiples of 32 within input_size x (1 +- multi_scale)."""
    low, high = config.input_size * (1 - config.multi_scale), config.input_size * (1 + config.multi_scale)
    return [s for s in range(32, int(high) + 1, 32) if s >= low]


def learnt_boxes(
    where: Locations, boxes: torch.Tensor, labels: torch.Tensor, config: DetectorConfig,
    predictions: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Targets:
    """The box each location learns in one training frame, by the config's assignment rule;
    'aligned' needs the frame's `predictions` (class probabilities (P, C), boxes (P, 4)) and
    falls back to ATSS without them."""
    if config.assignment == "aligned" and predictions is not None:
        return assign_task_aligned(where, boxes, labels, *predictions)
    if config.assignment in ("adaptive", "aligned"):
        return assign_adaptive(where, boxes, labels)
    return assign(where, boxes, labels, config.centre_radius)


def batch_targets(
    samples: Sequence[Sample], where: Locations, outputs: tuple[torch.Tensor, ...], config: DetectorConfig, progress: float
) -> list[Targets]:
    """What each location of each frame of a batch learns; the task-aligned rule reads the
    batch's predictions (not back-propagated) once `ALIGNED_AFTER` of training has passed."""
    predictions: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(samples)
    if config.assignment == "aligned" and progress >= ALIGNED_AFTER:
        side = samples[0][0].shape[0]
        probabilities = outputs[0].detach().sigmoid()
        boxes = decode(where.points, outputs[1].detach()).clamp(0, side)
        predictions = list(zip(probabilities, boxes))
    return [
        learnt_boxes(where, torch.from_numpy(b), torch.from_numpy(lab), config, predicted)
        for (_, b, lab), predicted in zip(samples, predictions)
    ]


def budget_schedule(optimiser: torch.optim.Optimizer, total_steps: int, stopping: EarlyStopping) -> torch.optim.lr_scheduler.LambdaLR:
    """Warm-up, then cosine annealing over `training_progress`: on a slower machine the rate
    still reaches its low end before `max_minutes`."""
    warmup = max(1, min(200, total_steps // 10))
    state = {"step": 0}

    def factor(_: int) -> float:
        state["step"] += 1
        if state["step"] <= warmup:
            return state["step"] / warmup
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * training_progress(state["step"], total_steps, stopping)))

    return torch.optim.lr_scheduler.LambdaLR(optimiser, factor)


def train_detector(
    rows: Sequence[ManifestRow],
    out_dir: str | Path,
    config: DetectorConfig | None = None,
    progress: bool = True,
    manifest_path: str | None = None,
    max_steps: int | None = None,
) -> ModelPackage:
    """Train and save a detector package; `max_steps` stops early (tests)."""
    config = config or DetectorConfig()
    log = get_logger(__name__, stage="train-detector")
    if config.input_size % 32:
        raise DatasetError(f"detector input_size must be a multiple of 32, got {config.input_size}")
    train_rows, validation_rows = split_for_training(rows, config.validation_fraction, config.seed)
    class_names = class_names_of(train_rows)
    size = config.input_size
    train = load_boxed(train_rows, size, class_names)
    validation = load_boxed(validation_rows, size, class_names)
    validation_truths = validation.truths(class_names)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    # channels-last: oneDNN's convolutions train ~1.4x faster per image on our CPUs (same math).
    network = DetectorNet.for_config(len(class_names), config).to(memory_format=torch.channels_last)
    sizes = training_sizes(config)
    where_at = {s: locations(s, network.strides) for s in sizes}
    where = where_at[size]
    tuning = EncoderFineTuning(
        network, config.learning_rate, encoder_share=config.encoder_learning_rate_share, frozen_blocks=config.frozen_encoder_blocks
    )
    # After freezing: only the depthwise convolutions that learn have a backward pass to speed up.
    train_depthwise_in_float32(network)
    optimiser = tuning.optimiser
    steps_per_epoch = max(1, int(np.ceil(len(train.images) / config.batch_size)))
    stopping = EarlyStopping(config.patience, config.max_minutes, higher_is_better=True, max_steps=max_steps)
    total_steps = config.epochs * steps_per_epoch
    scheduler = budget_schedule(optimiser, total_steps, stopping)
    average = WeightAverage(network, config.weight_average) if config.weight_average > 0 else None
    step = 0
    history = []
    bar = tqdm(range(config.epochs), desc="detector", unit="epoch", disable=not progress)
    for epoch in bar:
        tuning.train_mode()
        order = rng.permutation(len(train.images))
        losses: Counter = Counter()
        batches = 0
        for start in range(0, len(order), config.batch_size):
            mosaics = config.mosaic if training_progress(step, total_steps, stopping) < MOSAIC_ENDS_AT else 0.0
            picked = [augment(*training_sample(train, int(i), mosaics, rng), rng, transpose=config.transpose,
                              left_right=config.left_right_flip, up_down=config.up_down_flip)
                      for i in order[start : start + config.batch_size]]
            side = int(rng.choice(sizes)) if len(sizes) > 1 else size
            picked = [resized(sample, side) for sample in picked]
            batch_where = where_at[side]
            batch = to_input_tensor([image for image, _, _ in picked]).contiguous(memory_format=torch.channels_last)
            # Forward in this CPU's number format (bfloat16 halves the step where it is native), loss in float32.
            with autocast():
                outputs = float32_outputs(network.forward_for_training(batch))
            targets = batch_targets(picked, batch_where, outputs, config, training_progress(step, total_steps, stopping))
            loss = detection_loss(outputs, targets, batch_where, config.box_loss_weight, config.quality_focal, config.box_weighting, config.box_overlap)
            optimiser.zero_grad()
            loss["total"].backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), GRADIENT_CLIP)
            optimiser.step()
            scheduler.step()
            if average is not None:
                average.update(network)
            losses.update({k: float(v.detach()) for k, v in loss.items()})
            batches += 1
            step += 1
            if stopping.out_of_steps(step):
                break
        shipped = average.network if average is not None else network
        figures = coco_metrics(validation_truths, predict_boxed(shipped, validation, where, config, class_names), class_names)
        history.append({"epoch": epoch, **{f"loss_{k}": round(v / batches, 4) for k, v in losses.items()},
                        "validation_map50": round(figures["map50"], 4), "validation_map50_95": round(figures["map50_95"], 4)})
        bar.set_postfix(loss=f"{losses['total'] / batches:.3f}", map50=f"{figures['map50']:.3f}", map=f"{figures['map50_95']:.3f}")
        log.info("epoch", **history[-1])
        stopping.update(epoch, figures["map50_95"], shipped)
        if stopping.should_stop(epoch, step):
            break
    assert stopping.best_state is not None
    network.load_state_dict(stopping.best_state)
    predictions = predict_boxed(network, validation, where, config, class_names)
    figures = coco_metrics(validation_truths, predictions, class_names)
    confidence, f1 = best_confidence(validation_truths, predictions)
    seconds = stopping.seconds
    log.info("detector trained", epochs=len(history), best_epoch=stopping.best_epoch, validation_map50=round(figures["map50"], 4),
             validation_map50_95=round(figures["map50_95"], 4), confidence=confidence, seconds=round(seconds, 1))
    return save_package(
        out_dir,
        "detector",
        stopping.best_state,
        input_size=[size, size],
        preprocessing={
            **square_input_preprocessing(size),
            "classes": class_names,
            "output": f"FCOS boxes; confidence = {confidence_rule(config)}; per-class NMS; scaled back to the frame",
        },
        config=config.model_dump(mode="json"),
        thresholds={"confidence": confidence, "nms_iou": config.nms_iou},
        training_data={
            "manifest": manifest_path,
            "train_images": len(train_rows),
            "validation_images": len(validation_rows),
            "train_boxes": dict(Counter(b.defect_type for r in train_rows for b in r.boxes)),
            "epochs_run": len(history),
            "best_epoch": stopping.best_epoch,
            "training_seconds": round(seconds, 1),
        },
        metrics={
            "validation_map50": figures["map50"],
            "validation_map50_95": figures["map50_95"],
            "validation_ap_per_class": figures["ap_per_class"],
            "validation_f1_at_confidence": f1,
            "history": history,
        },
    )
