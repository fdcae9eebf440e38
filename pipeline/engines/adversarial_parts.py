"""The parts of a segmentation training run that exist only with a discriminator, built by name from a config.

An MSCG variant without a discriminator (``MSCG-Dis``) trains the generator alone: its discriminator, the
discriminator's optimizer and learning-rate schedule and the unlabeled data loader are ``None``
(:class:`~pipeline.engines.adversarial_trainer.AdversarialSegTrainer` takes ``None`` for each). These factories
take that decision in one place, so that the bundle's ``train.json`` declares components instead of computing
``"$None if @discriminator is None else ..."``, and ``multi_gpu_train.json`` switches a part to distributed
training with one key (``"network#distributed": true``)::

    "discriminator": {"_target_": "pipeline.engines.adversarial_parts.place_network",
                      "network": "$@networks[1]", "device": "@device"},
    "d_optimizer": {"_target_": "pipeline.engines.adversarial_parts.discriminator_optimizer",
                    "discriminator": "@discriminator", "lr": "@learning_rate", "weight_decay": "@weight_decay"}
"""

from __future__ import annotations

import torch
from monai.data import DataLoader, DistributedSampler
from torch import nn
from torch.utils.data import Dataset

__all__ = ["discriminator_lr_scheduler", "discriminator_optimizer", "place_network", "unlabeled_dataloader"]


def place_network(network: nn.Module | None, device: str | torch.device, distributed: bool = False
                  ) -> nn.Module | None:
    """``network`` on ``device``, wrapped in ``DistributedDataParallel`` when ``distributed`` (on that CUDA
    device, or on CPU with gloo); ``None`` stays ``None`` (a variant without a discriminator)."""
    if network is None:
        return None
    device = torch.device(device)
    network = network.to(device)
    if not distributed:
        return network
    return nn.parallel.DistributedDataParallel(network, device_ids=[device] if device.type == "cuda" else None)


def discriminator_optimizer(discriminator: nn.Module | None, lr: float, weight_decay: float
                            ) -> torch.optim.AdamW | None:
    """AdamW over the discriminator's parameters (the generator's optimizer and settings); ``None`` without one."""
    if discriminator is None:
        return None
    return torch.optim.AdamW(discriminator.parameters(), lr=lr, weight_decay=weight_decay)


def discriminator_lr_scheduler(optimizer: torch.optim.Optimizer | None, t_max: int
                               ) -> torch.optim.lr_scheduler.CosineAnnealingLR | None:
    """Cosine annealing over ``t_max`` epochs (the generator's schedule); ``None`` without an optimizer."""
    if optimizer is None:
        return None
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t_max)


def unlabeled_dataloader(dataset: Dataset, discriminator: nn.Module | None, batch_size: int, num_workers: int = 0,
                         distributed: bool = False) -> DataLoader | None:
    """Shuffled batches of the unlabeled slices for the discriminator's unsupervised term; ``None`` without a
    discriminator or without unlabeled slices. ``distributed``: each process reads its share
    (``DistributedSampler``, every process the same number of batches)."""
    if discriminator is None or len(dataset) == 0:
        return None
    if distributed:
        sampler = DistributedSampler(dataset, even_divisible=True, shuffle=True)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers)
