"""Training a pix2pix cloud-removal model: :func:`train_cloud_removal` runs the stages of
:class:`TrainingRun` (set-up: held-out pairs, choices, scaling, networks; resume; one step;
validation, keep-best and early stopping; checkpoint; finish: per-pair held-out figures and the
model file).

Loss and optimisation (pix2pix): ``L_G = GAN(D(x, G(x)), real) + lambda_L1 * |G(x) - y|_1``,
``L_D = 0.5 * (GAN(D(x, y), real) + GAN(D(x, G(x)), fake))`` (its real and fake halves are
logged apart); one D step then one G step per iteration; Adam; the learning rate is constant for
the first ``lr_decay_start`` of the steps and decays linearly to zero after. The L1 term is
averaged only over pixels whose target is known and weighs masked pixels ``mask_l1_weight`` times
the clear ones. The data sampler and torch's generator are reseeded from ``(seed, step)`` at
every step, so a resumed run draws the same crops and clouds as an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Callable

import numpy as np

from ..errors import Cancelled
from ..normalization import FixedScaling
from ..runtime import CancelCheck, Progress, check_cancelled, report
from . import checkpoints, guided
from .config import DEFAULT_NORMALIZATION, LEARNED, TASK, TrainConfig, TrainResult, resolve_choices
from .crops import CropSampler
from .domain import input_range
from .generators import DISCRIMINATOR, PRIOR_STARTS, build, discriminator_hyperparameters, generator_spec
from .scaling import to_display
from .sources import as_training_source, hold_out_pairs, learn_fixed_scaling
from .validation import pair_figures, validation_metrics, validation_score, validations_since_best

VALIDATION_CHUNK = 8        # validation crops per generator call
VALIDATION_SEED_OFFSET = 777
HELD_OUT_TILES = 8          # tiles per pair for the per-pair held-out figures
LOSSES = ("loss_g_gan", "loss_g_l1", "loss_d", "loss_d_real", "loss_d_fake", "lr")


def learning_rate(step: int, config: TrainConfig) -> float:
    """Constant, then a linear decay to zero over the steps after ``lr_decay_start``."""
    start = int(config.steps * config.lr_decay_start)
    if step < start:
        return config.lr
    span = max(config.steps - start, 1)
    return config.lr * max(0.0, 1.0 - (step - start) / span)


def total_steps(config: TrainConfig, training_pixels: int, tile: int) -> int:
    """``config.steps``, or with ``epochs`` that many passes over the training pixels in batches of crops."""
    if config.epochs is None:
        return int(config.steps)
    per_epoch = max(1, math.ceil(training_pixels / (tile * tile * config.batch_size)))
    return max(1, int(math.ceil(config.epochs * per_epoch)))


def train_cloud_removal(config: TrainConfig, out_model_path: str, *, checkpoint_dir: str | None = None,
                        resume_from: str | None = None, progress: Progress = None, cancelled: CancelCheck = None,
                        log: Callable[[str], None] | None = None) -> TrainResult:
    """Train a pix2pix cloud-removal model and save it to ``out_model_path`` (see the package docstring).

    ``progress(fraction, message)`` is called every step with the current losses;
    ``cancelled()`` is checked every step: on cancel :class:`errors.Cancelled` is raised, no model
    is written, and ``checkpoint_dir`` keeps its last complete checkpoint (resume with
    ``resume_from=checkpoint_dir``). History: ``step``, ``loss_g_gan``, ``loss_g_l1``, ``loss_d``,
    ``lr`` per step and ``val`` (a list of dicts with step, l1, psnr, ssim, psnr_masked; L1 in
    network space, PSNR/SSIM on display values with data range 1, over pixels with a known
    target; ``psnr_masked`` only over the simulated-cloud pixels), and ``loss_d_real`` /
    ``loss_d_fake``, the discriminator's two halves. ``held_out``: per source with a validation
    block (a held-out pair or block of rows), PSNR/SSIM of its cloudy input and of the output
    (:func:`.validation.pair_figures`). ``samples``: up to
    ``num_samples`` dicts ``cloudy``, ``generated``, ``composite`` (generated inside the mask,
    input outside), ``clear`` as float32 ``(C, T, T)`` display values in [0, 1] (p2 -> 0.1,
    p98 -> 0.9) and ``mask`` uint8, from the first validation crops (dropout off).
    """
    run = TrainingRun(config, checkpoint_dir, log)
    if resume_from:
        run.resume(resume_from)
    run.prepare_validation(resume_from)
    run.train(progress, cancelled)
    return run.finish(out_model_path)


class TrainingRun:
    """The state of one training run: data, networks, optimisers, history and the best generator."""

    def __init__(self, config: TrainConfig, checkpoint_dir: str | None, log: Callable[[str], None] | None):
        import torch

        from ..runtime import select_device

        self.t_start = time.perf_counter()
        self.checkpoint_dir, self.log = checkpoint_dir, log or (lambda message: None)
        self.size = config.resolved()
        self.tile = self.size["tile"]
        if config.num_threads:
            torch.set_num_threads(int(config.num_threads))
        self.device = select_device(config.device)
        sources = [as_training_source(s) for s in config.sources]
        sources, self.held_out_pairs = hold_out_pairs(sources, config.holdout_fraction, config.seed)
        self.choices = resolve_choices(config, sources)
        self.sampler = CropSampler(sources, self.tile, use_mask_channel=self.choices.mask_channel,
                                   synthetic=config.synthetic, max_unclear_fraction=config.max_unclear_fraction,
                                   augment=config.augment)
        self.bands = self.sampler.band_count
        self.config = replace(config, steps=total_steps(config, self.sampler.training_pixels, self.tile))
        self.scaling = self._fixed_scaling()
        self._build_networks()
        self.history = {"step": [], **{k: [] for k in LOSSES}, "val": [], "seconds": 0.0}
        self.step = 0
        self.best = {"score": -math.inf, "step": None, "state": None}
        self.last_checkpoint = None
        self.run_steps, self.train_seconds = 0, 0.0

    def _fixed_scaling(self) -> FixedScaling | None:
        """The one scaling of inputs and targets (learned from the training pixels, or a preset), given to the
        sampler; None for per-image scaling."""
        choice = self.choices.scaling
        if not self.choices.fixed_scaling:
            return None
        if choice == LEARNED:
            scaling = learn_fixed_scaling(self.sampler.sources)
        else:
            scaling = FixedScaling.preset(choice, self.bands)
        self.sampler.use_fixed_scaling(scaling)
        return scaling

    def _build_networks(self) -> None:
        """Generator and discriminator (weights from ``seed``), their Adam optimisers and the GAN criterion."""
        import torch
        from torch import nn

        c, s, choices = self.config, self.sampler, self.choices
        self.arch, self.hp = generator_spec(choices.generator, s.in_channels, self.bands, self.size, c.norm,
                                            c.dropout, choices.upsample, c.residual_scale)
        torch.manual_seed(c.seed)
        self.G = build(self.arch, self.hp, choices.paper_init).to(self.device)
        # the untrained generator is a candidate of keep-best when it is a model in its own right
        self.first_candidate = 0 if choices.generator in PRIOR_STARTS else 1
        self.d_hp = discriminator_hyperparameters(s.in_channels, self.bands, c.disc_base or self.size["base"],
                                                  c.disc_layers, c.norm)
        self.D = build(DISCRIMINATOR, self.d_hp, choices.paper_init).to(self.device)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=c.lr, betas=(c.beta1, c.beta2))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=c.lr, betas=(c.beta1, c.beta2))
        self.criterion = nn.BCEWithLogitsLoss() if c.gan_mode == "vanilla" else nn.MSELoss()

    def gan_loss(self, pred, real: bool):
        import torch

        return self.criterion(pred, torch.full_like(pred, 1.0 if real else 0.0))

    # -- set-up ---------------------------------------------------------------------------------
    def resume(self, resume_from: str) -> None:
        """Networks, optimisers, step count and history from a checkpoint."""
        state = checkpoints.load_checkpoint(resume_from, self.G, self.D, self.opt_g, self.opt_d)
        self.step = int(state["step"])
        self.history = state["history"]
        for key in LOSSES:  # checkpoints written before the discriminator's halves were logged
            self.history.setdefault(key, [])
        if state.get("scaling"):  # the run goes on with the scaling it started with
            self.scaling = FixedScaling.from_dict(state["scaling"])
            self.sampler.use_fixed_scaling(self.scaling)
        self.log(f"Resumed from {checkpoints.resolve_checkpoint(resume_from)} at step {self.step}.")

    def prepare_validation(self, resume_from: str | None) -> None:
        """The fixed validation crops, and the best generator a resumed run had kept."""
        import torch

        c = self.config
        self.vx, self.vy, self.vk, self.vm = self.sampler.validation_set(
            c.val_tiles, seed=c.seed + VALIDATION_SEED_OFFSET, repeats=c.val_repeats)
        self.vx_t = torch.from_numpy(self.vx).to(self.device)
        if resume_from and c.keep_best:
            self._restore_best(resume_from)

    def _restore_best(self, resume_from: str) -> None:
        scored = [v for v in self.history["val"] if self.first_candidate <= v["step"] <= self.step]  # as keep_if_best
        if not scored:
            return
        state = checkpoints.read_best_generator(resume_from)
        if state is not None:
            top = max(scored, key=validation_score)
            self.best.update(state=state, step=top["step"], score=validation_score(top))

    # -- validation -----------------------------------------------------------------------------
    def validate(self) -> None:
        """Score the generator (dropout off) on the validation crops; keep it if it is the best so far."""
        import torch

        self.G.eval()
        with torch.no_grad():
            fake = torch.cat([self.G(self.vx_t[i:i + VALIDATION_CHUNK])
                              for i in range(0, len(self.vx_t), VALIDATION_CHUNK)]).cpu().numpy()
        self.G.train()
        m = validation_metrics(fake, self.vy, self.vk, self.vm)
        m["step"] = self.step
        self.history["val"].append(m)
        inside = (f"; inside the clouds PSNR {m['psnr_masked']:.2f} dB, SSIM {m['ssim_masked']:.3f}"
                  if math.isfinite(m["psnr_masked"]) else "")
        self.log(f"step {self.step}: validation L1 {m['l1']:.4f}, PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f}"
                 + inside)
        self.keep_if_best(m)

    def stop_early(self) -> bool:
        """True once ``early_stopping`` validations in a row have not beaten the best score (logged)."""
        patience = self.config.early_stopping
        if not patience or validations_since_best(self.history["val"], self.first_candidate) < patience:
            return False
        best = max((v for v in self.history["val"] if v["step"] >= self.first_candidate), key=validation_score)
        self.log(f"Early stopping at step {self.step}: no better validation score in the last {patience} "
                 f"validation(s); the best was at step {best['step']}.")
        self.history["stopped_early"] = self.step
        return True

    def keep_if_best(self, m: dict) -> None:
        if self.config.keep_best and self.step >= self.first_candidate and validation_score(m) > self.best["score"]:
            self.best.update(score=validation_score(m), step=self.step,
                             state={k: v.detach().cpu().clone().contiguous() for k, v in self.G.state_dict().items()})
            checkpoints.write_best_generator(self.checkpoint_dir, self.best["state"])

    # -- training -------------------------------------------------------------------------------
    def train_step(self) -> tuple:
        """One discriminator step then one generator step on a fresh batch;
        ``(G GAN, G L1, D, D real, D fake, lr)``."""
        import torch

        c, device = self.config, self.device
        rng = np.random.default_rng([c.seed, self.step])
        torch.manual_seed(c.seed * 1_000_003 + self.step)
        x, y, known, masked = self.sampler.batch(c.batch_size, rng)
        x = torch.from_numpy(x).to(device)
        y = torch.from_numpy(y).to(device)
        w = known * (1.0 + (c.mask_l1_weight - 1.0) * masked)
        w = torch.from_numpy(w[:, None].astype(np.float32)).to(device)
        lr = learning_rate(self.step, c)
        for opt in (self.opt_g, self.opt_d):
            for g in opt.param_groups:
                g["lr"] = lr
        fake = self.G(x)
        # discriminator step
        for prm in self.D.parameters():
            prm.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        d_fake = self.gan_loss(self.D(torch.cat([x, fake.detach()], 1)), False)
        d_real = self.gan_loss(self.D(torch.cat([x, y], 1)), True)
        loss_d = 0.5 * (d_fake + d_real)
        loss_d.backward()
        self.opt_d.step()
        # generator step
        for prm in self.D.parameters():
            prm.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        g_gan = self.gan_loss(self.D(torch.cat([x, fake], 1)), True)
        g_l1 = ((fake - y).abs() * w).sum() / (w.sum() * self.bands).clamp(min=1.0)
        loss_g = c.lambda_gan * g_gan + c.lambda_l1 * g_l1
        loss_g.backward()
        self.opt_g.step()
        return g_gan, g_l1, loss_d, d_real, d_fake, lr

    def record(self, g_gan, g_l1, loss_d, d_real, d_fake, lr: float, started: float, progress: Progress) -> None:
        """Count the step, add its losses to the history and report them."""
        self.step += 1
        self.run_steps += 1
        self.history["step"].append(self.step)
        gv, lv, dv, rv, fv = (t.item() for t in (g_gan, g_l1, loss_d, d_real, d_fake))
        self.train_seconds += time.perf_counter() - started
        for key, value in zip(LOSSES, (gv, lv, dv, rv, fv, lr)):
            self.history[key].append(value)
        steps = self.config.steps
        report(progress, self.step / steps, f"step {self.step}/{steps}: G GAN {gv:.3f}, G L1 {lv:.4f}, "
                                            f"D {dv:.3f} (real {rv:.3f}, fake {fv:.3f})")

    def write_checkpoint(self) -> None:
        self.history["seconds"] = self.history.get("seconds", 0.0) + (time.perf_counter() - self.run_t0)
        self.run_t0 = time.perf_counter()
        state = {"step": self.step, "history": self.history, "config": self.config.to_json_dict(),
                 "generator": self.hp, "discriminator": self.d_hp,
                 "scaling": self.scaling.to_dict() if self.scaling is not None else None}
        self.last_checkpoint = checkpoints.write_checkpoint(self.checkpoint_dir, self.G, self.D, self.opt_g,
                                                            self.opt_d, state)

    def train(self, progress: Progress, cancelled: CancelCheck) -> None:
        """Validate at step 0 (unless resumed there), then train, validate and checkpoint until ``steps``."""
        c, choices = self.config, self.choices
        held = f"; held out for validation: {', '.join(self.held_out_pairs)}" if self.held_out_pairs else ""
        self.log(f"Training a {c.size} {choices.generator} generator ({self.hp['depth']} levels, {self.hp['base']} "
                 f"filters, tile {self.tile}) for {c.steps} steps on {self._device_name()}; "
                 f"{len(self.sampler.sources)} source(s){held}; {self.sampler.in_channels} input channels; "
                 f"scaling {choices.scaling}.")
        self.G.train()
        self.D.train()
        if not self.history["val"] or self.history["val"][-1]["step"] != self.step:
            if c.val_every and self.step == 0:
                self.validate()
        self.run_t0 = time.perf_counter()
        try:
            while self.step < c.steps:
                check_cancelled(cancelled)
                started = time.perf_counter()
                self.record(*self.train_step(), started, progress)
                if c.val_every and (self.step % c.val_every == 0 or self.step == c.steps):
                    self.validate()
                    stopping = self.stop_early()
                else:
                    stopping = False
                if self.checkpoint_dir and (self.step % max(c.checkpoint_every, 1) == 0 or self.step == c.steps
                                            or stopping):
                    self.write_checkpoint()
                if stopping:
                    break
        except Cancelled:
            where = checkpoints.latest_checkpoint(self.checkpoint_dir)
            msg = "Training cancelled by the user; no model was written."
            if where:
                msg += f" The last checkpoint ({where}) can be resumed."
            raise Cancelled(msg) from None
        self.history["seconds"] = self.history.get("seconds", 0.0) + (time.perf_counter() - self.run_t0)

    def _device_name(self) -> str:
        from ..runtime import describe_device

        return describe_device(self.device)

    # -- finish ---------------------------------------------------------------------------------
    def select_generator(self) -> int:
        """Load the best validated generator (with ``keep_best``); return the step it comes from."""
        if not (self.config.keep_best and self.best["state"] is not None):
            return self.step
        self.G.load_state_dict(self.best["state"], strict=True)
        self.log(f"Keeping the generator of step {self.best['step']} (best validation score "
                 f"{self.best['score']:.2f} = PSNR + 20 x SSIM, inside the clouds when the crops have a mask).")
        if self.best["step"] == 0:
            self.log("Training did not beat the untrained generator on the validation crops, so the model is "
                     "its starting point (the colour-matched copy / the unmixing fill); more or more varied "
                     "training data may help.")
        return self.best["step"]

    def report_samples(self) -> list:
        """The first validation crops, generated with dropout off, as display images for the report."""
        import torch

        self.G.eval()
        vx, vy, vm, nb = self.vx, self.vy, self.vm, self.bands
        n = min(self.config.num_samples, len(vx))
        with torch.no_grad():
            fake = self.G(self.vx_t[:n]).cpu().numpy() if n else np.zeros((0,) + vy.shape[1:], np.float32)
        samples = [{"cloudy": to_display(vx[i, :nb]), "generated": to_display(fake[i]), "clear": to_display(vy[i]),
                    "mask": vm[i].astype(np.uint8)} for i in range(n)]
        if self.choices.mask_channel:  # inference keeps the clear pixels: generated inside the mask only
            for i, smp in enumerate(samples):
                smp["composite"] = to_display(np.where(vm[i][None], fake[i], vx[i, :nb]))
        return samples

    def held_out_figures(self) -> list:
        """Per source with a validation block, PSNR/SSIM of its cloudy input and of the output (dropout off)."""
        import torch

        self.G.eval()
        figures = []
        for name, role, (x, y, known, mask) in self.sampler.held_out_sets(HELD_OUT_TILES):
            xt = torch.from_numpy(x).to(self.device)
            with torch.no_grad():
                fake = torch.cat([self.G(xt[i:i + VALIDATION_CHUNK])
                                  for i in range(0, len(xt), VALIDATION_CHUNK)]).cpu().numpy()
            fig = pair_figures(fake, x, y, known, mask if self.choices.mask_channel else None)
            figures.append({"pair": name, "held_out": "whole pair" if role == "validation" else "last rows", **fig})
            self.log(f"held out {name} ({figures[-1]['held_out']}, {fig['tiles']} tiles): cloudy input PSNR "
                     f"{fig['input_psnr']:.2f} dB, SSIM {fig['input_ssim']:.3f}; output PSNR {fig['psnr']:.2f} dB, "
                     f"SSIM {fig['ssim']:.3f}")
        return figures

    def metadata(self, selected: int, metrics: dict, held_out: list):
        """The model file's metadata: what the network is, what it saw and how it scored."""
        from ..weights import ModelMetadata

        c, sampler, choices = self.config, self.sampler, self.choices
        band_names = c.band_names or [f"band_{b}" for b in sampler.sources[0].bands]
        first = sampler.sources[0]
        extra = (["cloud_mask"] if choices.mask_channel else []) + [
            f"aux:{ai.name}:{b}" for ai, ab in first.aux_infos[:len(first.aux_stats)] for b in ab]
        if first.guides is not None:
            extra += guided.channel_names(first.guides.radar_bands)
        validation = "; ".join(
            f"{o.name}: " + ("whole raster (validation only)" if o.src.role == "validation" else
                             "none (training only)" if o.src.role == "train" else
                             f"last {o.src.val_fraction:g} of the rows")
            for o in sampler.sources)
        return ModelMetadata(
            task=TASK, architecture=self.arch, hyperparameters=self.hp, bands=list(band_names),
            extra_channels=extra, tile_size=self.tile,
            normalization=self.scaling.to_dict() if self.scaling is not None else dict(DEFAULT_NORMALIZATION),
            training={"config": c.to_json_dict(), "generator": choices.generator, "scaling": choices.scaling,
                      "steps": self.step, "selected_step": selected, "stopped_early": "stopped_early" in self.history,
                      "discriminator": self.d_hp, "inference_dropout": False,
                      "loss": f"{c.lambda_gan} x {c.gan_mode} GAN + {c.lambda_l1} x L1 "
                              f"(masked pixels x {c.mask_l1_weight})",
                      "validation": validation, "held_out": list(self.held_out_pairs),
                      "sources": [o.name for o in sampler.sources],
                      "guides": {o.name: o.guides.report for o in sampler.sources if o.guides is not None},
                      **self.guide_metadata(),
                      # fixed scaling: the model expects these units, and says when an image leaves their range
                      "input_range": input_range(sampler.sources) if self.scaling is not None else {}},
            metrics={"validation": metrics, "held_out_pairs": held_out},
        )

    def guide_metadata(self) -> dict:
        """What a guided model expects (the kinds of guides) and that it serves any band count."""
        first = self.sampler.sources[0]
        if first.guides is None:
            return {}
        return {"guide_kinds": {"optical": first.guides.base is not None, "radar": first.guides.radar_bands},
                "any_band_count": True}

    def finish(self, out_model_path: str) -> TrainResult:
        """Keep the best generator, make the report samples and write the model file."""
        from ..weights import save_model

        selected = self.select_generator()
        samples = self.report_samples()
        held_out = self.held_out_figures()
        chosen = [v for v in self.history["val"] if v["step"] == selected] or self.history["val"][-1:]
        metrics = {k: v for k, v in (chosen[-1].items() if chosen else []) if k != "step"}
        meta = self.metadata(selected, metrics, held_out)
        self.G.cpu()
        save_model(out_model_path, self.G, meta)
        total = time.perf_counter() - self.t_start
        return TrainResult(model_path=out_model_path, steps=self.step, history=self.history, samples=samples,
                           metrics=metrics, seconds=total,
                           steps_per_second=self.run_steps / self.train_seconds if self.train_seconds > 0 else 0.0,
                           checkpoint=self.last_checkpoint, held_out=held_out)
