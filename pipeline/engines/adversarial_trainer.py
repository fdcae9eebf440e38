"""Ignite/MONAI trainer for image-to-mask GANs (the MSCG segmenter).

MONAI's ``GanTrainer`` and ``AdversarialTrainer`` generate images from latent codes or
reconstruct images; neither fits a generator that maps an image to a mask and a
discriminator conditioned on the image. :class:`AdversarialSegTrainer` subclasses
:class:`monai.engines.Trainer` and overrides ``_iteration`` only, so every MONAI/Ignite
handler works unchanged (checkpointing, validation, LR schedules, stats, early stop).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from ignite.metrics import Metric
from monai.engines import Trainer
from monai.engines.utils import IterationEvents, default_metric_cmp_fn, default_prepare_batch
from monai.transforms import Transform
from monai.utils import CommonKeys as Keys
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Optimizer

from pipeline.engines.discriminator_inputs import DiscriminatorInput, as_discriminator_input
from pipeline.engines.losses import AdversarialLoss, ConfidenceMaskedSelfTrainingLoss, DiceBCELoss

SEG_LOSS, ADV_LOSS, SEMI_LOSS, D_LOSS = "seg_loss", "adv_loss", "semi_loss", "d_loss"


def _unwrap(network: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DataParallel/DistributedDataParallel wrapper (or the module itself)."""
    return network.module if isinstance(network, (torch.nn.DataParallel, DistributedDataParallel)) else network


def confidence_map(disc_logits: torch.Tensor, spatial_size: Sequence[int]) -> torch.Tensor:
    """The discriminator's per-pixel confidence: its patch logits upsampled (bilinear) to the image, sigmoid."""
    mode = "bilinear" if disc_logits.dim() == 4 else "trilinear"
    return torch.sigmoid(F.interpolate(disc_logits.float(), size=tuple(spatial_size), mode=mode, align_corners=False))


class AdversarialSegTrainer(Trainer):
    """Generator step (segmentation + weighted adversarial loss) then discriminator step.

    With ``discriminator=None`` it trains the generator alone with the segmentation loss
    (the paper's MSCG-Dis ablation). An optional ``unlabeled_data_loader`` yields batches
    with an ``image`` only; their generated masks train the generator through the
    discriminator and count as generated for the discriminator.

    Semi-supervised learning after Hung et al. (BMVC 2018, https://arxiv.org/abs/1802.07934): with
    ``lambda_semi > 0`` and once ``engine.state.iteration`` exceeds ``semi_warmup_iterations`` (restored
    with the trainer on resume), unlabeled slices also train the generator on its own hard
    pseudo-labels, only where the discriminator's confidence map (its patch logits upsampled to the
    slice, sigmoid) exceeds ``semi_loss.threshold`` (``T_semi``). ``disc_input`` decides what the
    discriminator sees as the mask (:class:`~pipeline.engines.discriminator_inputs.DiscriminatorInput`:
    ``"soft"``, today's formulation, ``"hard"`` or ``"smoothed"``). The defaults (``lambda_semi=0``,
    ``"soft"``) are the original MSCG formulation.

    ``state.output`` holds ``image``, ``label``, ``pred`` (generator logits), ``loss``
    (generator total), ``seg_loss``, ``adv_loss``, ``semi_loss`` and ``d_loss``.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable,
        generator: torch.nn.Module,
        g_optimizer: Optimizer,
        discriminator: torch.nn.Module | None = None,
        d_optimizer: Optimizer | None = None,
        seg_loss: Callable | None = None,
        adv_loss: AdversarialLoss | None = None,
        unlabeled_data_loader: Iterable | None = None,
        disc_input: str | DiscriminatorInput = "soft",
        semi_loss: ConfidenceMaskedSelfTrainingLoss | None = None,
        lambda_semi: float = 0.0,
        semi_warmup_iterations: int = 0,
        epoch_length: int | None = None,
        non_blocking: bool = False,
        prepare_batch: Callable = default_prepare_batch,
        iteration_update: Callable | None = None,
        postprocessing: Transform | None = None,
        key_train_metric: dict[str, Metric] | None = None,
        additional_metrics: dict[str, Metric] | None = None,
        metric_cmp_fn: Callable = default_metric_cmp_fn,
        train_handlers: Sequence | None = None,
        amp: bool = False,
        amp_kwargs: dict | None = None,
        decollate: bool = True,
        to_kwargs: dict | None = None,
    ) -> None:
        if (discriminator is None) != (d_optimizer is None):
            raise ValueError("discriminator and d_optimizer go together: give both or neither")
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            data_loader=train_data_loader,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            prepare_batch=prepare_batch,
            iteration_update=iteration_update,
            postprocessing=postprocessing,
            key_metric=key_train_metric,
            additional_metrics=additional_metrics,
            metric_cmp_fn=metric_cmp_fn,
            handlers=train_handlers,
            amp=amp,
            decollate=decollate,
            to_kwargs=to_kwargs,
            amp_kwargs=amp_kwargs,
        )
        self.network = self.generator = generator
        self.optimizer = self.g_optimizer = g_optimizer
        self.discriminator, self.d_optimizer = discriminator, d_optimizer
        self.seg_loss = seg_loss if seg_loss is not None else DiceBCELoss()
        self.adv_loss = adv_loss if adv_loss is not None else AdversarialLoss()
        self.unlabeled_data_loader = unlabeled_data_loader
        self._unlabeled_iter: Iterator | None = None
        self.disc_input = as_discriminator_input(disc_input)
        self.semi_loss = semi_loss if semi_loss is not None else ConfidenceMaskedSelfTrainingLoss()
        if lambda_semi < 0 or semi_warmup_iterations < 0:
            raise ValueError(f"lambda_semi and semi_warmup_iterations must be >= 0, got {lambda_semi}, "
                             f"{semi_warmup_iterations}")
        self.lambda_semi, self.semi_warmup_iterations = float(lambda_semi), int(semi_warmup_iterations)

    def self_training_active(self) -> bool:
        """Whether this iteration adds the confidence-masked self-training term (past the warm-up)."""
        return (self.lambda_semi > 0 and self.discriminator is not None and self.unlabeled_data_loader is not None
                and self.state.iteration > self.semi_warmup_iterations)

    def _next_unlabeled(self) -> Any:
        """Next unlabeled batch, cycling the loader independently of the labeled epoch."""
        if self.unlabeled_data_loader is None:
            return None
        for _ in range(2):
            if self._unlabeled_iter is None:
                self._unlabeled_iter = iter(self.unlabeled_data_loader)
            try:
                return next(self._unlabeled_iter)
            except StopIteration:
                self._unlabeled_iter = None
        return None  # an empty unlabeled loader

    def _autocast(self):
        if not self.amp:
            return nullcontext()
        device = self.state.device if isinstance(self.state.device, torch.device) else torch.device("cpu")
        kwargs = dict(self.amp_kwargs)
        if device.type == "cpu":
            kwargs.setdefault("dtype", torch.bfloat16)
        return torch.autocast(device.type, **kwargs)

    def _backward_step(self, loss: torch.Tensor, optimizer: Optimizer) -> None:
        scaler = self.scaler if self.scaler is not None and self.scaler.is_enabled() else None
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
        else:
            loss.backward()
            optimizer.step()

    def _iteration(self, engine: AdversarialSegTrainer, batchdata: dict[str, torch.Tensor]) -> dict:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        images, labels = batch[0], batch[1]
        if labels is None:
            raise ValueError("AdversarialSegTrainer needs a 'label' in every training batch; "
                             "pass label-free slices through unlabeled_data_loader")
        unlabeled = engine._next_unlabeled()
        if unlabeled is not None:
            unlabeled = engine.prepare_batch(unlabeled, engine.state.device, engine.non_blocking,
                                             **engine.to_kwargs)[0]
        gen, disc = engine.generator, engine.discriminator
        labels = labels.to(images.dtype)
        n = images.shape[0]
        inputs = images if unlabeled is None else torch.cat([images, unlabeled], 0)
        engine.state.output = {Keys.IMAGE: images, Keys.LABEL: labels}

        # generator step: one forward over labeled + unlabeled slices; the discriminator only
        # passes gradients to its input here, so its unwrapped module is used (no DDP reduction)
        gen.train()
        engine.g_optimizer.zero_grad(set_to_none=True)
        with engine._autocast():
            all_logits = gen(inputs)
            logits = all_logits[:n]
            engine.state.output[Keys.PRED] = logits
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            seg = engine.seg_loss(logits, labels)
            adv = semi = torch.zeros((), device=seg.device)
            if disc is not None:
                fake_mask = engine.disc_input.fake(torch.sigmoid(all_logits))
                critic = _unwrap(disc)
                critic.requires_grad_(False)
                fake = critic(torch.cat([inputs, fake_mask], 1))
                critic.requires_grad_(True)
                adv = engine.adv_loss.generator(fake[:n], fake[n:] if unlabeled is not None else None)
                if unlabeled is not None and engine.self_training_active():
                    confidence = confidence_map(fake[n:].detach(), unlabeled.shape[2:])
                    semi = engine.lambda_semi * engine.semi_loss(all_logits[n:], confidence)
            g_loss = seg + adv + semi
        engine.state.output.update({Keys.LOSS: g_loss.detach(), SEG_LOSS: seg.detach(), ADV_LOSS: adv.detach(),
                                    SEMI_LOSS: semi.detach()})
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        engine._backward_step(g_loss, engine.g_optimizer)
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)

        # discriminator step: (image, reference) pairs vs (image, generated) pairs, in one forward
        d_loss = torch.zeros((), device=g_loss.device)
        if disc is not None:
            disc.train()
            engine.d_optimizer.zero_grad(set_to_none=True)
            with engine._autocast():
                real_mask = engine.disc_input.real(labels)
                pairs = torch.cat([torch.cat([images, real_mask], 1), torch.cat([inputs, fake_mask.detach()], 1)], 0)
                scores = disc(pairs)
                unl_fake = scores[2 * n:] if unlabeled is not None else None
                d_loss = engine.adv_loss.discriminator(scores[:n], scores[n:2 * n], unl_fake)
            engine._backward_step(d_loss, engine.d_optimizer)
        if engine.scaler is not None and engine.scaler.is_enabled():
            engine.scaler.update()
        engine.state.output[D_LOSS] = d_loss.detach()
        engine.state.output[Keys.PRED] = logits.detach()
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output
