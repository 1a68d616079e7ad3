"""Training the mask finder on (image, product mask) pairs of several image types at once,
with augmentation and early stopping on validation IoU."""

from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lineinspect.shared.datasets.manifest import ManifestRow
from lineinspect.shared.logs import get_logger
from lineinspect.shared.models.backbone import EncoderFineTuning, square_input_preprocessing, to_input_tensor
from lineinspect.shared.models.mask.augment import augment
from lineinspect.shared.models.mask.config import MaskConfig
from lineinspect.shared.models.mask.evaluation import iou_table
from lineinspect.shared.models.mask.pairs import load_pairs, split_for_training
from lineinspect.shared.models.mask.torch_model import MaskNet, iou, mask_loss
from lineinspect.shared.models.package import ModelPackage, save_package
from lineinspect.shared.models.schedule import EarlyStopping, one_cycle


@torch.inference_mode()
def validation_iou(network: MaskNet, images: np.ndarray, masks: np.ndarray, batch_size: int) -> np.ndarray:
    network.eval()
    scores = []
    for start in range(0, len(images), batch_size):
        logits = network(to_input_tensor(list(images[start : start + batch_size])))
        scores.append(iou(logits[:, 0] >= 0, torch.from_numpy(masks[start : start + batch_size])))
    return torch.cat(scores).numpy()


def train_mask(
    rows: Sequence[ManifestRow],
    out_dir: str | Path,
    config: MaskConfig | None = None,
    progress: bool = True,
    manifest_path: str | None = None,
    max_steps: int | None = None,
) -> ModelPackage:
    """Train and save a mask package; `max_steps` stops early (tests)."""
    config = config or MaskConfig()
    log = get_logger(__name__, stage="train-mask")
    train_rows, validation_rows = split_for_training(rows, config.validation_fraction, config.seed)
    size = config.input_size
    train_images, train_masks = load_pairs(train_rows, size)
    val_images, val_masks = load_pairs(validation_rows, size)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    network = MaskNet(config.decoder_channels, config.upsampling)
    tuning = EncoderFineTuning(network, config.learning_rate)
    optimiser = tuning.optimiser
    steps_per_epoch = max(1, int(np.ceil(len(train_images) / config.batch_size)))
    scheduler = one_cycle(optimiser, tuning.learning_rates, config.epochs * steps_per_epoch)
    stopping = EarlyStopping(config.patience, config.max_minutes, higher_is_better=True, max_steps=max_steps)
    step = 0
    history = []
    bar = tqdm(range(config.epochs), desc="mask finder", unit="epoch", disable=not progress)
    for epoch in bar:
        tuning.train_mode()
        order = rng.permutation(len(train_images))
        losses = []
        for start in range(0, len(order), config.batch_size):
            pairs = [augment(train_images[i], train_masks[i], rng) for i in order[start : start + config.batch_size]]
            batch = to_input_tensor([image for image, _ in pairs])
            target = torch.from_numpy(np.stack([mask for _, mask in pairs]).astype(np.float32))[:, None]
            loss = mask_loss(network(batch), target)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            step += 1
            if stopping.out_of_steps(step):
                break
        scores = validation_iou(network, val_images, val_masks, config.batch_size)
        mean_iou = float(scores.mean())
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "validation_iou": mean_iou})
        bar.set_postfix(loss=f"{np.mean(losses):.3f}", val_iou=f"{mean_iou:.4f}")
        stopping.update(epoch, mean_iou, network)
        if stopping.should_stop(epoch, step):
            break
    assert stopping.best_state is not None
    best_state, best_epoch, best_iou = stopping.best_state, stopping.best_epoch, stopping.best
    network.load_state_dict(best_state)
    per_type: dict[str, list[float]] = defaultdict(list)
    for row, score in zip(validation_rows, validation_iou(network, val_images, val_masks, config.batch_size)):
        per_type[row.image_type].append(float(score))
    seconds = stopping.seconds
    log.info("mask finder trained", epochs=len(history), best_epoch=best_epoch, validation_iou=round(best_iou, 4),
             seconds=round(seconds, 1))
    return save_package(
        out_dir,
        "mask",
        best_state,
        input_size=[config.input_size, config.input_size],
        preprocessing={
            **square_input_preprocessing(config.input_size),
            "output": "sigmoid >= 0.5, resized back to the frame (linear interpolation of probabilities)",
        },
        config=config.model_dump(mode="json"),
        thresholds={"probability": 0.5},
        training_data={
            "manifest": manifest_path,
            "train_images": dict(Counter(r.image_type for r in train_rows)),
            "validation_images": dict(Counter(r.image_type for r in validation_rows)),
            "epochs_run": len(history),
            "best_epoch": best_epoch,
            "training_seconds": round(seconds, 1),
        },
        metrics={
            "validation_iou_mean": best_iou,
            "validation_per_image_type": iou_table(per_type),
            "history": history,
        },
    )
