"""Reconstruction artefacts of a synthetic acquisition, applied per axial slice in k-space.

* Gibbs ringing: MONAI's :class:`~monai.transforms.GibbsNoise` (k-space truncation), each slice
  a channel so that only the in-plane axes are truncated.
* Motion ghosts: a random phase error on every other phase-encoding line (periodic motion), which
  puts attenuated copies of the head at half the field of view along the phase direction.
* Intensity non-linearity: a power law of the normalised signal.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import GibbsNoise


def apply_gibbs(volume_zyx: np.ndarray, alpha: float) -> np.ndarray:
    """Gibbs ringing of strength ``alpha`` (0: none, 1: all k-space lost) on each axial slice."""
    if alpha <= 0:
        return volume_zyx
    out = GibbsNoise(alpha=float(alpha))(torch.from_numpy(np.ascontiguousarray(volume_zyx)))
    return np.asarray(out, dtype=np.float32)


def apply_ghosting(volume_zyx: np.ndarray, amplitude: float, rng: np.random.Generator, phase_axis: int = 1) -> np.ndarray:
    """Motion ghosts along ``phase_axis`` (1 = y, 2 = x of ``(z, y, x)``): odd phase lines get a phase error
    whose size makes ghosts of about ``amplitude`` times the signal."""
    if amplitude <= 0:
        return volume_zyx
    data = torch.from_numpy(np.ascontiguousarray(volume_zyx))
    k = torch.fft.fftshift(torch.fft.fft(data.to(torch.complex64), dim=phase_axis), dim=phase_axis)
    n = data.shape[phase_axis]
    phase = torch.zeros(n)
    phase[1::2] = float(2.0 * np.arcsin(min(amplitude, 0.5))) * float(rng.choice([-1.0, 1.0]))
    shape = [1, 1, 1]
    shape[phase_axis] = n
    k = k * torch.exp(1j * phase).view(shape)
    out = torch.fft.ifft(torch.fft.ifftshift(k, dim=phase_axis), dim=phase_axis).abs()
    return out.numpy().astype(np.float32)


def apply_nonlinearity(volume: np.ndarray, gamma: float, reference: float) -> np.ndarray:
    """``reference * (volume / reference) ** gamma`` for non-negative signal (negative values kept as 0)."""
    if gamma == 1.0 or reference <= 0:
        return volume
    scaled = np.clip(volume / reference, 0.0, None)
    return (reference * np.power(scaled, gamma)).astype(np.float32)
