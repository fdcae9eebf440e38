"""Saliency maps of the H3K27M status prediction on one slice: Grad-CAM or the input gradient.

* ``method="gradcam"``: MONAI's :class:`monai.visualize.GradCAM` on the last encoder stage
  (the stage-3 feature map the head reads: ``encoder.transformer3`` when the net has
  transformers, else ``encoder.resnet.layer3``; stride 16, so the map is coarse), upsampled
  bilinearly to the slice and divided by its maximum. Zero everywhere means the layer holds
  no positive evidence for the class (Grad-CAM's ReLU).
* ``method="gradient"``: ``|d logit[target_class] / d image|`` per pixel (maximum over input
  channels), divided by its maximum: fine-grained but noisy.

The net is left as it was: train/eval mode, ``requires_grad`` flags, parameter gradients and
hooks are restored (MONAI's hooks are registered on the target layer and removed after).
:func:`saliency_overlay` draws the map over the slice with
:func:`evaluation.reports.slice_figures.saliency_overlay_png`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from monai.visualize import GradCAM
from torch import nn

from evaluation.reports.slice_figures import saliency_overlay_png
from transforms.vocabulary import STATUS_NAMES

__all__ = ["ClassLogits", "default_target_layer", "saliency_map", "saliency_overlay", "SALIENCY_METHODS"]

SALIENCY_METHODS = ("gradcam", "gradient")


class ClassLogits(nn.Module):
    """``net(x)[key]``: a dict-returning net (e.g. :class:`H3K27MNet`) as a logits-returning module.

    MONAI's CAM tools need a module that returns the class logits; layer names inside it are
    the net's names prefixed with ``"net."``.
    """

    def __init__(self, net: nn.Module, key: str = "class_logits") -> None:
        super().__init__()
        self.net, self.key = net, key
        self.train(net.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out[self.key] if isinstance(out, Mapping) else out


def default_target_layer(net: nn.Module) -> str:
    """Name in ``net`` of the last encoder stage's output: ``encoder.transformer3`` or ``encoder.resnet.layer3``."""
    encoder = getattr(net, "encoder", None)
    if encoder is not None and getattr(encoder, "transformer3", None) is not None:
        return "encoder.transformer3"
    if encoder is not None and hasattr(getattr(encoder, "resnet", None), "layer3"):
        return "encoder.resnet.layer3"
    raise ValueError(f"no H3K27M encoder found in {type(net).__name__}; pass target_layer= (a name from "
                     "net.named_modules())")


@contextmanager
def _isolated(net: nn.Module) -> Iterator[None]:
    """Eval mode and frozen parameters inside; mode, flags and ``.grad`` of every parameter restored after."""
    training = net.training
    params = list(net.parameters())
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    try:
        net.eval()
        for p in params:
            p.requires_grad_(False)
        with torch.enable_grad():
            yield
    finally:
        for p, flag, grad in zip(params, flags, grads):
            p.requires_grad_(flag)
            p.grad = grad
        net.train(training)


@contextmanager
def _removing_new_hooks(module: nn.Module) -> Iterator[None]:
    """Remove the forward/backward hooks registered on ``module`` inside the block (MONAI keeps no handles)."""
    tables = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_backward_hooks")
    before = {t: set(getattr(module, t, {}).keys()) for t in tables}
    full_backward = getattr(module, "_is_full_backward_hook", None)
    try:
        yield
    finally:
        for t in tables:
            table = getattr(module, t, None)
            if table is not None:
                for key in [k for k in table if k not in before[t]]:
                    del table[key]
        if full_backward is not None or hasattr(module, "_is_full_backward_hook"):
            module._is_full_backward_hook = full_backward


def _as_batch(net: nn.Module, image_slice: Any) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(image_slice) if not isinstance(image_slice, torch.Tensor) else image_slice)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"image_slice must be (C, H, W) or (H, W), got shape {tuple(x.shape)}")
    param = next(net.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    return x[None].detach().to(device=device, dtype=torch.float32).clone()


def _normalised(raw: torch.Tensor) -> np.ndarray:
    heat = raw.detach().float().cpu().numpy()
    peak = float(heat.max()) if heat.size else 0.0
    return heat / peak if peak > 0 else np.zeros_like(heat)


def saliency_map(net: nn.Module, image_slice: Any, target_class: int = 1, method: str = "gradcam",
                 target_layer: str | None = None) -> np.ndarray:
    """Saliency of ``target_class`` (1 = altered) on one slice: an ``(H, W)`` float array in [0, 1].

    Args:
        net: a net returning the class logits or a dict with ``"class_logits"`` (:class:`H3K27MNet`).
        image_slice: ``(C, H, W)`` (or ``(H, W)`` for one channel) tensor or array, preprocessed as
            for the net (size a multiple of 16 for :class:`H3K27MNet`).
        target_class: the class whose logit is explained.
        method: ``"gradcam"`` or ``"gradient"`` (module docstring).
        target_layer: Grad-CAM layer, a name in ``net.named_modules()``; default
            :func:`default_target_layer`.
    """
    method = str(method).lower().replace("-", "").replace("_", "")
    if method not in SALIENCY_METHODS:
        raise ValueError(f"unknown saliency method {method!r}; use one of {SALIENCY_METHODS}")
    x = _as_batch(net, image_slice)
    wrapper = ClassLogits(net)
    with _isolated(net):
        num_classes = wrapper(x).shape[1]
        if not 0 <= int(target_class) < num_classes:
            raise ValueError(f"target_class must lie in [0, {num_classes}), got {target_class}")
        if method == "gradient":
            x.requires_grad_(True)
            wrapper(x)[0, int(target_class)].backward()
            return _normalised(x.grad[0].abs().amax(dim=0))
        name = target_layer or default_target_layer(net)
        modules = dict(net.named_modules())
        if name not in modules or name == "":
            raise ValueError(f"target_layer {name!r} is not a module of {type(net).__name__}")
        x.requires_grad_(True)  # gradients reach the layer even with frozen parameters
        with _removing_new_hooks(modules[name]):
            cam = GradCAM(wrapper, target_layers=f"net.{name}", postprocessing=lambda t: t)
            raw = cam(x, class_idx=int(target_class))
        return _normalised(raw[0, 0])


def radiological(array: np.ndarray) -> np.ndarray:
    """An axial slice of a RAS-oriented volume (axis 0 = left to right, axis 1 = posterior to anterior), as
    radiologists view it: anterior at the top, the patient's right on the image's left."""
    return np.ascontiguousarray(array.T[::-1, ::-1])


def saliency_overlay(net: nn.Module, image_slice: Any, mask: Any = None, target_class: int = 1,
                     method: str = "gradcam", target_layer: str | None = None, title: str | None = None,
                     alpha: float = 0.6, ras: bool = True) -> bytes:
    """PNG bytes: the slice (channel 0) with the saliency map of ``target_class`` overlaid.

    ``mask`` (``(H, W)`` or ``(1, H, W)``) is drawn as a green outline. The default title names
    the method, the class and the net's P(class) for the slice. See :func:`saliency_map`.
    ``ras=True`` (slices of the pipeline's RAS-oriented volumes) draws them in radiological view.
    """
    heat = saliency_map(net, image_slice, target_class, method, target_layer)
    x = _as_batch(net, image_slice)
    with _isolated(net), torch.no_grad():
        probability = float(torch.softmax(ClassLogits(net)(x).float(), dim=1)[0, int(target_class)])
    image = x[0, 0].cpu().numpy()
    m = None
    if mask is not None:
        m = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask, dtype=np.float32)
        m = m.reshape(m.shape[-2:]) if m.ndim == 3 and m.shape[0] == 1 else m
    if title is None:
        cls = STATUS_NAMES.get(int(target_class), f"class {target_class}")
        name = "Grad-CAM" if method.lower().startswith("grad") and "cam" in method.lower() else "input gradient"
        empty = " (no positive evidence)" if not heat.any() else ""
        title = f"{name} for {cls}{empty}, P({cls}) = {probability:.2f}"
    if ras:
        image, heat, m = radiological(image), radiological(heat), None if m is None else radiological(m)
    return saliency_overlay_png(image, heat, m, title=title, alpha=alpha)
