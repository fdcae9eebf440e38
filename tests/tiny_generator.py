"""A tiny random MSCG generator whose masks hold 0s and 1s on the tiny cohort (shared by the inference tests)."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.networks import build_generator
from transforms import build_transforms

TINY_FEATURES = [4, 8, 16]


def tiny_generator(cohort_dir: Path, seed: int = 0, features: list[int] = TINY_FEATURES) -> torch.nn.Module:
    """Seeded random generator at 32² whose head bias is centred on patient tiny_00's median logit."""
    torch.manual_seed(seed)
    net = build_generator("MSCG", features=features).eval()
    volume = build_transforms("infer", spatial_size=32)({"image": str(cohort_dir / "images" / "tiny_00_t2.nii.gz")})
    with torch.no_grad():
        net.head.bias -= net(volume["image"].as_tensor().permute(3, 0, 1, 2)).median()
    return net
