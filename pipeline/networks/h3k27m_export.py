"""The H3K27M co-training network with one tensor output, for bundles: Model Zoo checks, TorchScript, ONNX.

:class:`~pipeline.networks.h3k27m_net.H3K27MNet` returns a dict (class logits, mask logits, features),
which MONAI's ``verify_net_in_out`` (it reads ``output.shape``), ``ckpt_export`` (TorchScript) and
``onnx_export`` (named outputs) cannot take. :class:`H3K27MExportNet` is the same module (same
parameters and state-dict keys, so trained weights load unchanged) whose ``forward`` returns one
``(B, num_classes + mask_channels, H, W)`` tensor:

* channels ``0 .. num_classes - 1``: the status logits (wild-type, altered), constant over each
  slice (broadcast over ``H, W``);
* the remaining channel(s): the tumour-mask logits.

:func:`split_status_mask` takes it apart again: ``(class_logits (B, num_classes), mask_logits (B, m, H, W))``.
"""

from __future__ import annotations

from typing import Any

import torch

from pipeline.networks.h3k27m_net import H3K27MNet, configured_net_kwargs

__all__ = ["H3K27MExportNet", "build_h3k27m_export_net", "split_status_mask"]


class H3K27MExportNet(H3K27MNet):
    """:class:`H3K27MNet` whose ``forward`` returns one tensor: status logits broadcast over the slice,
    then the mask logits (see the module docstring). Needs the mask branch (``use_decoder=True``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not self.use_decoder:
            raise ValueError("H3K27MExportNet needs the mask branch (use_decoder=True): its output carries both")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        class_logits, mask_logits, _ = self.outputs(x)
        assert mask_logits is not None  # use_decoder is checked in __init__ (TorchScript needs the refinement)
        b, _, h, w = mask_logits.shape
        status = class_logits[:, :, None, None].expand(b, class_logits.shape[1], h, w)
        return torch.cat([status, mask_logits.to(class_logits.dtype)], dim=1)


def split_status_mask(output: torch.Tensor, num_classes: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """``(class_logits (B, num_classes), mask_logits (B, C - num_classes, H, W))`` of an
    :class:`H3K27MExportNet` output (or of its TorchScript / ONNX export)."""
    if output.ndim != 4 or output.shape[1] <= num_classes:
        raise ValueError(f"expected a (B, {num_classes} + mask channels, H, W) output, got shape {list(output.shape)}")
    return output[:, :num_classes, 0, 0], output[:, num_classes:]


def build_h3k27m_export_net(name: str = "full", **kwargs: Any) -> H3K27MExportNet:
    """The :class:`H3K27MExportNet` of configuration ``name`` (see :func:`~pipeline.networks.build_h3k27m_net`)."""
    return H3K27MExportNet(**configured_net_kwargs(name, kwargs))
