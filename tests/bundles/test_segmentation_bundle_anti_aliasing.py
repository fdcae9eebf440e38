"""The segmentation bundle's inference.json smooths before shrinking exactly as build_transforms('infer') does
(issue 15): on a head larger than the network's input, where the anti-aliasing really runs. The tiny cohort of
the other config test is upsampled, so it never smooths."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.bundle import ConfigParser

from pipeline.bundle_trust.trust import use_bundle_code
from transforms import build_transforms

SEG_BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "dmg_mscg_segmentation"


def test_config_preprocessing_smooths_like_the_package(tmp_path):
    rng = np.random.default_rng(0)
    shape = (96, 90, 4)
    ii, jj = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    head = (((ii - 48) / 44) ** 2 + ((jj - 45) / 42) ** 2 < 1)[..., None]
    image = np.where(head, 400 + rng.normal(0, 40, shape), 0).astype(np.float32)
    path = tmp_path / "big_t2.nii.gz"
    nib.save(nib.Nifti1Image(image, np.diag([0.9, 0.9, 5.0, 1.0])), str(path))

    parser = ConfigParser()
    parser.read_config(str(SEG_BUNDLE / "configs" / "inference.json"))
    parser["spatial_size"] = 40  # the head box (~90 px) shrinks 2.2x: 7-tap kernels in-plane
    targets = [t["_target_"] for t in parser["preprocessing"]["transforms"]]
    assert "scripts.transforms.AntiAliasSmoothd" in targets
    with use_bundle_code(SEG_BUNDLE):
        from_config = parser.get_parsed_content("preprocessing")({"image": str(path)})["image"]
    from_package = build_transforms("infer", spatial_size=40)({"image": str(path)})["image"]
    assert from_config.shape == from_package.shape == (1, 40, 40, 4)
    assert torch.equal(from_config.as_tensor(), from_package.as_tensor())
    assert torch.equal(from_config.affine, from_package.affine)
