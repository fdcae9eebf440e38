"""Several H3K27M networks as one bundle network: e.g. the five cross-validation fold models, averaged.

The folds of one recipe differ widely in how well they read the status (validation AUROC 0.53-0.83 for the
0.4.0 recipe), and each saw a different four fifths of the patients; their average is steadier than any one of
them (the nnU-Net practice of shipping the fold models). :class:`H3K27MEnsembleNet` holds ``ensemble_size``
:class:`~pipeline.networks.h3k27m_export.H3K27MExportNet` members of one configuration and returns the
**mean of their outputs**: the same one-tensor output as a single member (status logits broadcast over the
slice, then the mask logits; :func:`~pipeline.networks.h3k27m_export.split_status_mask` takes it apart), so
everything downstream (slice selection by the mask, the patient rule, temperature, threshold, TorchScript,
ONNX, ``verify_net_in_out``) is unchanged. Averaging logits gives the geometric mean of the members' odds.

Its state dict holds each member's under ``members.<i>.``; :func:`ensemble_state_dict` builds it from the
members' own state dicts (``dmg bundle ship B --checkpoint A --checkpoint B ...``).
:func:`build_h3k27m_ensemble_net` is the bundle's ``network_def``: with ``ensemble_size=1`` it returns the
plain export network, whose state-dict keys carry no prefix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, List

import torch
from torch import nn

from pipeline.networks.h3k27m_export import H3K27MExportNet, build_h3k27m_export_net
from pipeline.networks.h3k27m_net import configured_net_kwargs

__all__ = ["H3K27MEnsembleNet", "build_h3k27m_ensemble_net", "ensemble_state_dict"]

MEMBER_PREFIX = "members"


class H3K27MEnsembleNet(nn.Module):
    """``ensemble_size`` :class:`H3K27MExportNet` members built with ``kwargs``; ``forward`` returns the mean
    of their ``(B, num_classes + mask_channels, H, W)`` outputs."""

    def __init__(self, ensemble_size: int, **kwargs: Any) -> None:
        super().__init__()
        if int(ensemble_size) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got ensemble_size={ensemble_size}")
        self.members = nn.ModuleList([H3K27MExportNet(**kwargs) for _ in range(int(ensemble_size))])

    @property
    def ensemble_size(self) -> int:
        return len(self.members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs: List[torch.Tensor] = []
        for member in self.members:
            outputs.append(member(x))
        return torch.stack(outputs, dim=0).mean(dim=0)


def build_h3k27m_ensemble_net(name: str = "full", ensemble_size: int = 1,
                              **kwargs: Any) -> H3K27MExportNet | H3K27MEnsembleNet:
    """:func:`~pipeline.networks.h3k27m_export.build_h3k27m_export_net` of configuration ``name`` when
    ``ensemble_size`` is 1, else an :class:`H3K27MEnsembleNet` of that many such members."""
    if int(ensemble_size) < 1:
        raise ValueError(f"ensemble_size must be at least 1, got {ensemble_size}")
    if int(ensemble_size) == 1:
        return build_h3k27m_export_net(name, **kwargs)
    return H3K27MEnsembleNet(int(ensemble_size), **configured_net_kwargs(name, kwargs))


def ensemble_state_dict(state_dicts: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The :class:`H3K27MEnsembleNet` state dict of members with these state dicts, in order."""
    if len(state_dicts) < 2:
        raise ValueError(f"an ensemble needs at least 2 members' weights, got {len(state_dicts)}")
    return {f"{MEMBER_PREFIX}.{i}.{key}": value for i, sd in enumerate(state_dicts) for key, value in sd.items()}
