"""Training the reviewer from (frame, product mask) pairs: every pass draws fresh perturbed
masks, a third of each grade, from augmented frames; a fixed perturbed validation set decides
when to stop."""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lineinspect.shared.datasets.manifest import ManifestRow
from lineinspect.shared.logs import get_logger
from lineinspect.shared.models.backbone import square_input_preprocessing
from lineinspect.shared.models.mask.augment import augment, punch_opening, shuffle_colours
from lineinspect.shared.models.mask.pairs import load_pairs, split_for_training
from lineinspect.shared.models.package import ModelPackage, save_package
from lineinspect.shared.models.schedule import EarlyStopping, one_cycle
from lineinspect.shared.models.reviewer.config import ReviewerConfig
from lineinspect.shared.models.reviewer.figures import review_figures
from lineinspect.shared.models.reviewer.inference import reviewer_input, thresholds_of
from lineinspect.shared.models.reviewer.perturb import GRADES, GradeThresholds, perturb_for_grade
from lineinspect.shared.models.reviewer.torch_model import ReviewerNet, grade_probabilities, reviewer_loss

SWAP_CANDIDATES = 4
OPENING_SHARE = 0.4  # frames that get an opening punched through the product


def augment_for_review(image: np.ndarray, truth: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The mask finder's augmentation, then what makes a reviewer trained on a few products
    judge others too (a new product is where a finder fails first): openings through the
    product, and any colour."""
    image, truth = augment(image, truth, rng)
    if rng.random() < OPENING_SHARE:
        image, truth = punch_opening(image, truth, rng)
    return shuffle_colours(image, rng), truth


@dataclass
class GradedMasks:
    """Frames with perturbed masks at input size, their true IoU and grade."""

    images: np.ndarray  # (N, S, S, 3) uint8
    masks: np.ndarray  # (N, S, S) bool
    ious: np.ndarray  # (N,) float32
    grades: np.ndarray  # (N,) int64, 1..3
    kinds: list[tuple[str, ...]]

    def batches(self, batch_size: int, order: np.ndarray | None = None):
        order = np.arange(len(self.grades)) if order is None else order
        for start in range(0, len(order), batch_size):
            pick = order[start : start + batch_size]
            yield (
                reviewer_input(list(self.images[pick]), list(self.masks[pick])),
                torch.from_numpy(self.grades[pick]),
                torch.from_numpy(self.ious[pick]),
            )


def draw_graded_masks(
    images: np.ndarray,
    truths: np.ndarray,
    count: int,
    thresholds: GradeThresholds,
    rng: np.random.Generator,
    augment_frames: bool = True,
) -> GradedMasks:
    """`count` perturbed masks cycling through the grades, on frames picked at random."""
    frames, masks, ious, grades, kinds = [], [], [], [], []
    for k in range(count):
        index = int(rng.integers(len(images)))
        image, truth = images[index], truths[index]
        if augment_frames:
            image, truth = augment_for_review(image, truth, rng)
        others = [truths[j] for j in rng.choice(len(truths), size=min(SWAP_CANDIDATES, len(truths)), replace=False) if j != index]
        drawn = perturb_for_grade(truth, GRADES[k % len(GRADES)], thresholds, rng, others)
        frames.append(np.ascontiguousarray(image))
        masks.append(drawn.mask)
        ious.append(drawn.iou)
        grades.append(drawn.grade)
        kinds.append(drawn.kinds)
    return GradedMasks(np.stack(frames), np.stack(masks), np.array(ious, np.float32), np.array(grades, np.int64), kinds)


@torch.inference_mode()
def validate(network: ReviewerNet, data: GradedMasks, batch_size: int) -> tuple[float, dict[str, object]]:
    network.eval()
    losses, probabilities = [], []
    for inputs, grades, ious in data.batches(batch_size):
        output = network(inputs)
        losses.append(float(reviewer_loss(output, grades, ious)) * len(grades))
        probabilities.append(grade_probabilities(output))
    probs = torch.cat(probabilities).numpy()
    figures = review_figures(data.grades, probs.argmax(1) + 1, probs[:, 2])
    return sum(losses) / len(data.grades), figures


def train_reviewer(
    rows: Sequence[ManifestRow],
    out_dir: str | Path,
    config: ReviewerConfig | None = None,
    progress: bool = True,
    manifest_path: str | None = None,
    max_steps: int | None = None,
) -> ModelPackage:
    """Train and save a reviewer package; `max_steps` stops early (tests)."""
    config = config or ReviewerConfig()
    log = get_logger(__name__, stage="train-reviewer")
    thresholds = thresholds_of(config)
    train_rows, validation_rows = split_for_training(rows, config.validation_fraction, config.seed)
    size = config.input_size
    train_images, train_masks = load_pairs(train_rows, size)
    val_images, val_masks = load_pairs(validation_rows, size)
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    validation = draw_graded_masks(
        np.repeat(val_images, config.validation_perturbations, axis=0),
        np.repeat(val_masks, config.validation_perturbations, axis=0),
        len(val_images) * config.validation_perturbations, thresholds, np.random.default_rng(config.seed + 1),
        augment_frames=False,
    )
    network = ReviewerNet(config.trunk_blocks, config.head_channels)
    head_params = [*network.mix.parameters(), *network.head.parameters(), *network.encoder.stem.parameters()]
    head_ids = {id(p) for p in head_params}
    trunk_params = [p for p in network.parameters() if id(p) not in head_ids]
    optimiser = torch.optim.AdamW(
        [{"params": trunk_params, "lr": config.learning_rate / 4}, {"params": head_params, "lr": config.learning_rate}],
        weight_decay=1e-4,
    )
    steps_per_epoch = int(np.ceil(config.samples_per_epoch / config.batch_size))
    scheduler = one_cycle(optimiser, [config.learning_rate / 4, config.learning_rate], config.epochs * steps_per_epoch)
    stopping = EarlyStopping(config.patience, config.max_minutes, higher_is_better=False, max_steps=max_steps)
    best_figures: dict[str, object] = {}
    step = 0
    history = []
    bar = tqdm(range(config.epochs), desc="reviewer", unit="epoch", disable=not progress)
    for epoch in bar:
        drawn = draw_graded_masks(train_images, train_masks, config.samples_per_epoch, thresholds, rng)
        network.train()
        losses = []
        for inputs, grades, ious in drawn.batches(config.batch_size, rng.permutation(len(drawn.grades))):
            loss = reviewer_loss(network(inputs), grades, ious)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            step += 1
            if stopping.out_of_steps(step):
                break
        validation_loss, figures = validate(network, validation, config.batch_size)
        auc = figures["auc_untrustworthy"]
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "validation_loss": validation_loss,
                        "validation_auc_untrustworthy": auc, "validation_grade_accuracy": figures["grade_accuracy"]})
        bar.set_postfix(loss=f"{np.mean(losses):.3f}", val_loss=f"{validation_loss:.3f}", val_auc=f"{auc or 0:.4f}")
        if stopping.update(epoch, validation_loss, network):
            best_figures = figures
        if stopping.should_stop(epoch, step):
            break
    assert stopping.best_state is not None
    best_state, best_epoch, best_loss = stopping.best_state, stopping.best_epoch, stopping.best
    seconds = stopping.seconds
    log.info("reviewer trained", epochs=len(history), best_epoch=best_epoch, validation_loss=round(best_loss, 4),
             validation_auc_untrustworthy=best_figures.get("auc_untrustworthy"), seconds=round(seconds, 1))
    return save_package(
        out_dir,
        "reviewer",
        best_state,
        input_size=[size, size],
        preprocessing={
            **square_input_preprocessing(size),
            "mask": f"area-resized to {size}x{size}, product where at least half covered; fourth channel +1 product / -1 background",
        },
        config=config.model_dump(mode="json"),
        thresholds={
            "grades": {
                "1": f"perfect: IoU with the truth >= {config.perfect_iou}",
                "2": f"usable: IoU >= {config.usable_iou}",
                "3": f"untrustworthy: IoU < {config.usable_iou}",
            },
            "perfect_iou": config.perfect_iou,
            "usable_iou": config.usable_iou,
            "decision": "the grade of highest probability",
        },
        training_data={
            "manifest": manifest_path,
            "train_images": dict(Counter(r.image_type for r in train_rows)),
            "validation_images": dict(Counter(r.image_type for r in validation_rows)),
            "validation_masks": int(len(validation.grades)),
            "epochs_run": len(history),
            "best_epoch": best_epoch,
            "training_seconds": round(seconds, 1),
        },
        metrics={"validation": best_figures, "history": history},
    )
