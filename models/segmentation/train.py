"""train_segmentation: a U-Net trained with Dice (or Dice + cross-entropy) on tiles of one spatial block,
validated on another, with plateau learning-rate decay and early stopping.

The recipe: read the data (:mod:`.data`), learn the input scaling from the training block,
build the network, score the validation block once before training, then for each epoch train
on random augmented tiles and score the validation block; the learning rate is divided when
the validation loss stops improving, training stops when it has not improved for ``patience``
epochs, and the network of the best epoch is the one saved.
"""

from __future__ import annotations

import copy
import dataclasses
import time

import numpy as np

from ..augment import augment, random_transform
from ..class_metrics import class_scores
from ..normalization import FixedScaling
from ..runtime import CancelCheck, Progress, check_cancelled, describe_device, report, select_device
from .config import SegmentationTrainConfig, SegmentationTrainResult
from .data import TrainingData, load_training_data, resolve_class_weights, sample_tiles
from .losses import segmentation_loss
from .model import array_logits, build_network, save_segmentation_model, unet_hyperparameters

SCALING_SAMPLE = 1_000_000  # training pixels per band the scaling's percentiles are taken from


def train_segmentation(config: SegmentationTrainConfig, model_path: str, progress: Progress = None,
                       cancelled: CancelCheck = None) -> SegmentationTrainResult:
    """Train, keep the best network by validation loss, write the model file; return the run's figures."""
    import torch

    config.check()
    start = time.time()
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    data = load_training_data(config.inputs, config.labels, config.val_fraction, gap=8)
    tile = fit_tile(config.tile, data, config.depth)
    scaling = learn_scaling(data, rng)
    run = _Run(config, data, scaling, tile, select_device(config.device))
    run.history_add(0, None, run.validate())
    initial = run.last_scores
    best_epoch = run.fit(rng, progress, cancelled)
    run.net.load_state_dict(run.best_state)
    run.net.eval()
    metrics = run.best_scores
    save_segmentation_model(model_path, run.net.cpu(), run.hyperparameters, bands=data.band_names,
                            classes=data.classes, scaling=scaling, tile_size=tile,
                            training={**config.to_metadata(), "tile": tile, "class_weights": run.weights,
                                      "best_epoch": best_epoch, "epochs_run": run.epoch},
                            metrics={"held_out": metrics, "held_out_before_training": initial})
    report(progress, 1.0, f"Model written: {model_path}")
    return SegmentationTrainResult(model_path, data.classes, run.history, metrics, initial, best_epoch, run.epoch,
                                   run.epoch < config.epochs, time.time() - start, describe_device(run.device),
                                   run.weights, run.samples(config.samples), tile)


def fit_tile(tile: int, data: TrainingData, depth: int) -> int:
    """The tile size, reduced to fit the training block, as a multiple of ``2 ** depth``."""
    rows, cols = data.train_extent()
    m = 2 ** depth
    return max(m, (min(tile, rows, cols) // m) * m)


def learn_scaling(data: TrainingData, rng: np.random.Generator) -> FixedScaling:
    """Per-band fixed scaling from the valid pixels of the training block (a random sample of them)."""
    rows, cols = data.train_extent()
    ok = data.valid[:rows, :cols]
    values = data.x[:, :rows, :cols][:, ok]
    if values.shape[1] > SCALING_SAMPLE:
        values = values[:, rng.choice(values.shape[1], SCALING_SAMPLE, replace=False)]
    return FixedScaling.learn(list(values))


class _Run:
    """The state of one training run: network, optimiser, schedule, history and the best network so far."""

    def __init__(self, config: SegmentationTrainConfig, data: TrainingData, scaling: FixedScaling, tile: int,
                 device):
        import torch

        self.config, self.data, self.tile, self.device = config, data, tile, device
        x = scaling.to_network(data.x)
        x[:, ~data.valid] = 0.0
        self.train_data = dataclasses.replace(data, x=x)
        cut = data.validation_slices()
        self.val_x, self.val_target = x[(slice(None),) + cut], data.target[cut]
        self.weights = resolve_class_weights(config.class_weights, data)
        self.loss_fn = segmentation_loss(config.loss)
        self.hyperparameters = unet_hyperparameters(len(data.band_names), data.classes.count, config.depth,
                                                    config.width, config.dropout)
        self.net = build_network(self.hyperparameters).to(device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.lr)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="min", factor=config.plateau_factor, patience=config.plateau_patience,
            min_lr=config.min_lr)
        self.history = {"epoch": [], "loss": [], "val_loss": [], "val_mean_dice": [], "val_miou": [],
                        "val_pixel_accuracy": [], "lr": []}
        self.epoch, self.best_loss, self.best_state, self.best_scores = 0, np.inf, None, None
        self.last_scores = None

    def fit(self, rng: np.random.Generator, progress, cancelled) -> int:
        """Epochs of training until ``epochs`` or early stopping; the best epoch's number."""
        cfg, best_epoch, waited = self.config, 0, 0
        for epoch in range(1, cfg.epochs + 1):
            self.epoch = epoch
            loss = self.train_epoch(rng, epoch, progress, cancelled)
            val_loss = self.validate()
            self.history_add(epoch, loss, val_loss)
            self.scheduler.step(val_loss)
            if val_loss < self.best_loss - 1e-4:
                best_epoch, waited = epoch, 0
                self.best_loss, self.best_scores = val_loss, self.last_scores
                self.best_state = copy.deepcopy(self.net.state_dict())
            else:
                waited += 1
                if waited >= cfg.patience:
                    break
        if self.best_state is None:  # never better than the untrained network: keep the last one
            self.best_state, self.best_scores = copy.deepcopy(self.net.state_dict()), self.last_scores
        return best_epoch

    def train_epoch(self, rng, epoch: int, progress, cancelled) -> float:
        import torch

        cfg, losses = self.config, []
        self.net.train()
        for step in range(cfg.steps_per_epoch):
            check_cancelled(cancelled)
            xb, tb = sample_tiles(self.train_data, self.tile, cfg.batch_size, rng)
            pairs = [augment([x, t], *random_transform(rng)) for x, t in zip(xb, tb)]
            xb = torch.from_numpy(np.stack([p[0] for p in pairs])).to(self.device)
            tb = torch.from_numpy(np.stack([p[1] for p in pairs])).to(self.device)
            loss = self.loss_fn(self.net(xb), tb, self.weights)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            losses.append(float(loss.detach()))
            done = (epoch - 1 + (step + 1) / cfg.steps_per_epoch) / cfg.epochs
            report(progress, 0.98 * done, None)
        return float(np.mean(losses))

    def validate(self) -> float:
        """Loss and class scores of the whole validation block; the loss is returned."""
        import torch

        self.net.eval()
        logits = array_logits(self.net, self.val_x, self.device)
        with torch.no_grad():
            loss = float(self.loss_fn(torch.from_numpy(logits)[None], torch.from_numpy(self.val_target)[None],
                                      self.weights))
        self.val_pred = logits.argmax(0)
        self.last_scores = class_scores(self.val_pred, self.val_target, self.data.classes.count,
                                        self.val_target >= 0)
        return loss

    def history_add(self, epoch: int, loss, val_loss: float) -> None:
        s, h = self.last_scores, self.history
        h["epoch"].append(epoch), h["loss"].append(loss), h["val_loss"].append(val_loss)
        h["val_mean_dice"].append(s["mean_dice"]), h["val_miou"].append(s["miou"])
        h["val_pixel_accuracy"].append(s["pixel_accuracy"]), h["lr"].append(self.optimizer.param_groups[0]["lr"])

    def samples(self, count: int) -> list:
        """Up to ``count`` crops of the validation block: raw image, truth and the best network's prediction."""
        self.validate()
        val_x, _ = self.data.validation()
        h, w = self.val_target.shape
        size = min(h, w, 256)
        out = []
        for i in range(count):
            c0 = int(round(i * (w - size) / max(count - 1, 1)))
            r0 = int(round(i * (h - size) / max(count - 1, 1)))
            cut = (slice(r0, r0 + size), slice(c0, c0 + size))
            out.append({"image": val_x[(slice(None),) + cut], "truth": self.val_target[cut],
                        "predicted": self.val_pred[cut]})
            if w - size <= 0 and h - size <= 0:
                break
        return out
