"""One place that builds the train / validate / infer preprocessing and the inference postprocessing."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from monai.transforms import (
    Activationsd,
    AsDiscreted,
    CastToTyped,
    CenterScaleCropd,
    Compose,
    ConcatItemsd,
    DeleteItemsd,
    EnsureChannelFirstd,
    EnsureTyped,
    Invertd,
    LoadImaged,
    Orientationd,
    Rand2DElasticd,
    RandAdjustContrastd,
    RandAffined,
    RandBiasFieldd,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSharpend,
    RandGaussianSmoothd,
    RandGibbsNoised,
    RandHistogramShiftd,
    RandKSpaceSpikeNoised,
    RandRotated,
    RandScaleIntensityd,
    RandSimulateLowResolutiond,
    ResampleToMatchd,
    Resized,
    SaveImaged,
)

from .anti_alias import AntiAliasSmoothd
from .atomic_writer import AtomicNibabelWriter
from .bias_field import N4BiasFieldCorrectiond
from .crop import InPlaneForegroundCropd
from .intensity import PercentileNormalized
from .memory import ReleaseHeapMemoryd
from .label import BinarizeLabeld
from .naming import CopyToMetad, prediction_name_formatter
from .slices import AxialSlicesd, SlicePolicy
from .vocabulary import NIFTI_SUFFIXES, PREDICTION_POSTFIX

__all__ = ["build_transforms", "build_slice_augmentation", "build_postprocessing", "MODES"]

# Default probabilities of the training augmentation (each transform is drawn independently per slice).
AUGMENTATION_DEFAULTS: dict[str, float] = {
    "flip_prob": 0.5, "rotate_prob": 0.5, "affine_prob": 0.5, "elastic_prob": 0.25, "intensity_prob": 0.3,
}

Mode = Literal["train", "validate", "infer"]
MODES: tuple[str, ...] = ("train", "validate", "infer")


def _in_plane_size(spatial_size: int | Sequence[int]) -> tuple[int, int]:
    size = (spatial_size, spatial_size) if isinstance(spatial_size, int) else tuple(spatial_size)
    if len(size) != 2 or any(int(s) <= 0 for s in size):
        raise ValueError(f"spatial_size must be an int or two positive ints, got {spatial_size!r}")
    return int(size[0]), int(size[1])


def build_transforms(
    mode: Mode,
    *,
    spatial_size: int | Sequence[int] = 240,
    image_key: str = "image",
    label_key: str = "label",
    classes_key: str = "label_classes",
    slice_policy: SlicePolicy = "lesion+background",
    background_ratio: float = 1.0,
    min_background: int = 1,
    lower_pct: float = 0.5,
    upper_pct: float = 99.5,
    norm_foreground_threshold: float | None = 0.0,
    crop_threshold: float = 0.05,
    crop_margin: int = 8,
    square_crop: bool = True,
    center_crop_fraction: float = 1.0,
    extra_image_keys: Sequence[str] = (),
    augment: bool = True,
    flip_prob: float = AUGMENTATION_DEFAULTS["flip_prob"],
    rotate_prob: float = AUGMENTATION_DEFAULTS["rotate_prob"],
    rotate_degrees: float = 15.0,
    intensity_prob: float = AUGMENTATION_DEFAULTS["intensity_prob"],
    affine_prob: float = AUGMENTATION_DEFAULTS["affine_prob"],
    elastic_prob: float = AUGMENTATION_DEFAULTS["elastic_prob"],
    reader: str | None = None,
    n4: bool = False,
    compact: bool = False,
) -> Compose:
    """Preprocessing for one MRI sequence (keys ``image`` and optional ``label``: file paths).

    Common 3D part: load -> channel first -> binarise label (``data[classes_key]``, default ``> 0``) ->
    orient RAS (last axis = axial S) -> optional N4 bias-field correction (``n4``) -> in-plane foreground crop ->
    optional central in-plane crop to ``center_crop_fraction`` of the head box (MONAI ``CenterScaleCropd``; the
    midline sites of DMG, pons, midbrain, medulla and thalamus, lie in the central half) -> in-plane resize to
    ``spatial_size``
    (image bilinear + anti-aliasing: MONAI's Gaussian smoothing by :class:`AntiAliasSmoothd`, then ``Resized``;
    label nearest-exact; slice axis untouched) -> percentile
    normalisation of the image to [0, 1], channel by channel.

    ``extra_image_keys`` (e.g. ``("t1c",)``): more sequences of the same patient, loaded, resampled onto the
    image's grid through their affines (MONAI ``ResampleToMatchd``, bilinear; sequences of one study share
    the scanner's world coordinates) and appended to ``image`` as input channels.

    * ``"train"``: then :class:`AxialSlicesd` (``slice_policy``) -> :func:`build_slice_augmentation`
      (flip, rotation, scale/shear, elastic; bias, histogram, gamma, blur, low resolution, Gibbs,
      spikes, scale, noise) -> plain float tensors ``(C, H, W)``.
    * ``"validate"``: the 3D volume, image and label, ``(1, H, W, D)`` MetaTensors (for ``SliceInferer``);
      ``compact=True`` stores them as float16 and uint8 (training caches of hundreds of volumes).
    * ``"infer"``: image only, ``(1, H, W, D)`` MetaTensor carrying the trace that
      :func:`build_postprocessing` inverts back to the input grid.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    size = _in_plane_size(spatial_size)
    keys = (image_key,) if mode == "infer" else (image_key, label_key)
    has_label = len(keys) == 2
    resize_mode = ("bilinear", "nearest-exact")[: len(keys)]

    extra = tuple(extra_image_keys)
    steps: list = [
        LoadImaged((*keys, *extra), reader=reader, image_only=True, allow_missing_keys=True),
        EnsureChannelFirstd((*keys, *extra), allow_missing_keys=True),
    ]
    if extra:
        steps += [
            ResampleToMatchd(extra, key_dst=image_key, mode="bilinear", padding_mode="zeros"),
            ConcatItemsd((image_key, *extra), name=image_key),
            DeleteItemsd(extra),
        ]
    if has_label:
        steps.append(BinarizeLabeld(label_key, classes_key=classes_key))
    steps += [
        DeleteItemsd(classes_key),  # ragged lists would break batch collation
        Orientationd(keys, axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")), allow_missing_keys=True),
    ]
    if n4:
        steps.append(N4BiasFieldCorrectiond(image_key))
    steps += [
        InPlaneForegroundCropd(
            keys, source_key=image_key, threshold=crop_threshold, margin=crop_margin, square=square_crop,
            allow_missing_keys=True,
        ),
    ]
    if not 0.0 < center_crop_fraction <= 1.0:
        raise ValueError(f"center_crop_fraction must be in (0, 1], got {center_crop_fraction}")
    if center_crop_fraction < 1.0:
        steps.append(CenterScaleCropd(keys, roi_scale=(center_crop_fraction, center_crop_fraction, 1.0),
                                      allow_missing_keys=True))
    steps += [
        # the smoothing of MONAI's Resize(anti_aliasing=True), per axis and ~10x faster (see anti_alias.py)
        AntiAliasSmoothd(image_key, spatial_size=(*size, -1)),
        Resized(keys, spatial_size=(*size, -1), mode=resize_mode, anti_aliasing=False, allow_missing_keys=True),
        PercentileNormalized(
            image_key, lower=lower_pct, upper=upper_pct, foreground_threshold=norm_foreground_threshold
        ),
    ]
    if mode == "train":
        steps.append(
            AxialSlicesd(
                keys, label_key=label_key, policy=slice_policy, background_ratio=background_ratio,
                min_background=min_background,
            )
        )
        steps.append(build_slice_augmentation(keys, augment, flip_prob, rotate_prob, rotate_degrees, intensity_prob,
                                              affine_prob, elastic_prob))
    elif compact:  # many cached volumes: float16 image, uint8 label (training casts slices back to float32)
        steps.append(CastToTyped(keys, dtype=(torch.float16, torch.uint8)[: len(keys)], allow_missing_keys=True))
        steps.append(ReleaseHeapMemoryd())
    else:
        steps.append(EnsureTyped(keys, dtype=torch.float32, track_meta=True, allow_missing_keys=True))
    return Compose(steps)


def build_slice_augmentation(
    keys: Sequence[str] = ("image", "label"),
    augment: bool = True,
    flip_prob: float = AUGMENTATION_DEFAULTS["flip_prob"],
    rotate_prob: float = AUGMENTATION_DEFAULTS["rotate_prob"],
    rotate_degrees: float = 15.0,
    intensity_prob: float = AUGMENTATION_DEFAULTS["intensity_prob"],
    affine_prob: float = AUGMENTATION_DEFAULTS["affine_prob"],
    elastic_prob: float = AUGMENTATION_DEFAULTS["elastic_prob"],
) -> Compose:
    """Training augmentation of one 2D slice dict, ending in plain float tensors.

    Made so that a model cannot lean on absolute intensity, one contrast or one scanner (the
    domain-randomisation lesson of SynthSeg), on top of the randomised synthetic data.

    Spatial (image bilinear, label nearest, so they stay aligned): left-right flip on RAS axis 0
    (``flip_prob``), in-plane rotation up to ``rotate_degrees`` (``rotate_prob``; the paper's two),
    scale 0.75-1.3 and shear up to 0.15 (``affine_prob``), smooth elastic deformation
    (``elastic_prob``).

    Intensity, on the image (``keys[0]``) only, each drawn with ``intensity_prob``: a smooth
    multiplicative bias field, a random histogram shift (non-linear intensity map), gamma 0.5-2.0,
    Gaussian blur or sharpening, simulated low resolution (down- then up-sampling), Gibbs ringing,
    k-space spikes (at a fifth of ``intensity_prob``), a global scale of +-25 % and Gaussian noise.
    Values may leave [0, 1] a little, like a real scan after normalisation.  ``augment=False`` only
    converts."""
    steps: list = []
    if augment:
        image_key = keys[0]
        modes = ("bilinear", "nearest")[: len(keys)]
        steps += [
            # volumes may be cached compactly (float16 image, uint8 label): augment in float32
            EnsureTyped(keys, dtype=torch.float32, track_meta=False, allow_missing_keys=True),
            RandFlipd(keys, prob=flip_prob, spatial_axis=0, allow_missing_keys=True),
            RandRotated(
                keys, range_x=math.radians(rotate_degrees), prob=rotate_prob, keep_size=True,
                mode=modes, padding_mode="zeros", allow_missing_keys=True,
            ),
        ]
        if affine_prob > 0:
            steps.append(RandAffined(keys, prob=affine_prob, scale_range=(0.25, 0.25), shear_range=(0.15, 0.15),
                                     mode=modes, padding_mode="zeros", allow_missing_keys=True))
        if elastic_prob > 0:
            steps.append(Rand2DElasticd(keys, spacing=(24, 24), magnitude_range=(0.5, 2.5), prob=elastic_prob,
                                        mode=modes, padding_mode="zeros", allow_missing_keys=True))
        if intensity_prob > 0:
            p = intensity_prob
            steps += [
                RandBiasFieldd(image_key, degree=3, coeff_range=(0.0, 0.25), prob=p),
                RandHistogramShiftd(image_key, num_control_points=(4, 10), prob=p),
                RandAdjustContrastd(image_key, gamma=(0.5, 2.0), prob=p),
                RandGaussianSmoothd(image_key, sigma_x=(0.3, 1.2), sigma_y=(0.3, 1.2), prob=p / 2),
                RandGaussianSharpend(image_key, prob=p / 2),
                RandSimulateLowResolutiond(image_key, zoom_range=(0.4, 0.9), upsample_mode="bilinear", prob=p),
                RandGibbsNoised(image_key, alpha=(0.0, 0.6), prob=p),
                RandKSpaceSpikeNoised(image_key, prob=p / 5, intensity_range=(8.0, 11.0)),
                RandScaleIntensityd(image_key, factors=0.25, prob=p),
                RandGaussianNoised(image_key, std=0.06, prob=p),
            ]
    steps.append(EnsureTyped(keys, dtype=torch.float32, track_meta=False, allow_missing_keys=True))
    return Compose(steps)


def build_postprocessing(
    preprocessing: Compose,
    *,
    pred_key: str = "pred",
    image_key: str = "image",
    activation: Literal["sigmoid", "softmax"] | None = None,
    argmax: bool = False,
    threshold: float = 0.5,
    output_dir: str | None = None,
    output_postfix: str = PREDICTION_POSTFIX,
) -> Compose:
    """Per-item postprocessing of a prediction made on the ``"infer"``/``"validate"`` grid.

    ``activation`` (optional) -> ``Invertd`` with the *same* ``preprocessing`` instance (probabilities are
    resampled with the image's interpolation back to the original grid, orientation and affine) ->
    ``argmax`` over channels, or ``> threshold`` -> uint8 mask. With ``output_dir`` the mask is written by
    ``SaveImaged`` (atomically: temporary file, then rename) as ``<output_dir>/<patient_id>_<sequence>_<output_postfix>.nii.gz`` (input file stem
    when the dict has no patient_id/sequence), on the input image's affine. Apply it to decollated items.
    """
    steps: list = [EnsureTyped(pred_key, track_meta=True)]  # Invertd needs a MetaTensor prediction
    if activation is not None:
        steps.append(Activationsd(pred_key, sigmoid=activation == "sigmoid", softmax=activation == "softmax"))
    steps.append(Invertd(pred_key, transform=preprocessing, orig_keys=image_key, nearest_interp=False, to_tensor=True))
    steps.append(AsDiscreted(pred_key, argmax=True) if argmax else AsDiscreted(pred_key, threshold=threshold))
    steps.append(CastToTyped(pred_key, dtype=torch.uint8))
    if output_dir is not None:
        steps += [
            CopyToMetad(pred_key, source_keys=("patient_id", "sequence")),
            SaveImaged(
                pred_key, output_dir=output_dir, output_postfix=output_postfix, output_ext=NIFTI_SUFFIXES[0],
                output_dtype=np.uint8, resample=False, separate_folder=False, print_log=False,
                output_name_formatter=prediction_name_formatter, writer=AtomicNibabelWriter,
            ),
        ]
    return Compose(steps)
