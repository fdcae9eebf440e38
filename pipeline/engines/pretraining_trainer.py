"""Trainer for masked-patch inpainting (the H3K27M encoder's self-supervised pretraining).

Each iteration hides a fresh random set of 16x16 patches (``mask_ratio`` of them) of every
slice, the model reconstructs the image, and the loss counts the masked pixels only.
Subclasses :class:`monai.engines.Trainer` and overrides ``_iteration`` only, so MONAI's
handlers work unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from monai.engines import Trainer
from monai.engines.utils import IterationEvents, default_prepare_batch
from monai.utils import CommonKeys as Keys
from torch.optim import Optimizer

from pipeline.engines.masked_pretraining import MaskedReconstructionLoss, apply_patch_mask, random_patch_mask

MASK = "patch_mask"


class MaskedPretrainingTrainer(Trainer):
    """``network`` maps masked images to images (e.g. :class:`InpaintingModel`); ``state.output`` holds
    ``image``, ``pred`` (reconstruction), ``patch_mask`` and ``loss``. The masks are drawn from a
    generator seeded with ``seed``, so a run is reproducible."""

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable,
        network: torch.nn.Module,
        optimizer: Optimizer,
        loss_function: Callable | None = None,
        patch_size: int = 16,
        mask_ratio: float = 0.45,
        seed: int = 0,
        epoch_length: int | None = None,
        prepare_batch: Callable = default_prepare_batch,
        train_handlers: Sequence | None = None,
        amp: bool = False,
        decollate: bool = False,
    ) -> None:
        super().__init__(device=device, max_epochs=max_epochs, data_loader=train_data_loader,
                         epoch_length=epoch_length, prepare_batch=prepare_batch, handlers=train_handlers, amp=amp,
                         decollate=decollate)
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.network, self.optimizer = network, optimizer
        self.loss_function = loss_function if loss_function is not None else MaskedReconstructionLoss()
        self.patch_size, self.mask_ratio = patch_size, mask_ratio
        self.mask_generator = torch.Generator().manual_seed(seed)

    def _iteration(self, engine: MaskedPretrainingTrainer, batchdata: dict) -> dict:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        images = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking)[0]
        mask = random_patch_mask(images.shape, patch=engine.patch_size, ratio=engine.mask_ratio,
                                 generator=engine.mask_generator).to(images.device)
        engine.network.train()
        engine.optimizer.zero_grad(set_to_none=True)
        autocast = torch.autocast(images.device.type, dtype=torch.bfloat16 if images.device.type == "cpu"
                                  else torch.float16, enabled=engine.amp)
        with autocast:
            reconstruction = engine.network(apply_patch_mask(images, mask))
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            loss = engine.loss_function(reconstruction.float(), images.float(), mask)
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        loss.backward()
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        engine.optimizer.step()
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        engine.state.output = {Keys.IMAGE: images, Keys.PRED: reconstruction.detach(), MASK: mask,
                               Keys.LOSS: loss.detach()}
        return engine.state.output
