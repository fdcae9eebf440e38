"""The trained weights that ship in bundles/dmg_mscg_segmentation/models: present, small, verifiable, and
TorchScript and PyTorch versions that agree on a real (synthetic) scan."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from pipeline.bundle_sharing import verify_bundle
from pipeline.bundle_sharing.layout import find_models
from pipeline.data.cohort import SEQUENCES
from pipeline.inference import load_segmentation_model

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "dmg_mscg_segmentation"

pytestmark = pytest.mark.usefixtures("single_thread")


def test_every_sequence_has_weights_and_a_torchscript_export_under_25_mb():
    models = find_models(BUNDLE)
    for seq in SEQUENCES:
        files = models[seq]
        assert files.pytorch == BUNDLE / "models" / f"model_{seq}.pt", models
        assert files.torchscript == BUNDLE / "models" / f"model_{seq}.ts", models
        for path in (files.pytorch, files.torchscript):
            assert path.stat().st_size < 25 * 2**20


def test_shipped_bundle_verifies():
    report = verify_bundle(BUNDLE)
    assert report.ok, report.table()
    assert report.count("PASS") >= 2 * len(SEQUENCES)  # every model loads, and its TorchScript export agrees


def test_pytorch_and_torchscript_models_give_the_same_mask(tmp_path):
    from pipeline.data.synthetic import generate_cohort

    manifest = generate_cohort(tmp_path / "c", 1, centers=["center_c"], seed=11, progress=False)
    image = next((manifest.parent / "images").glob("*_t2.nii.gz"))
    eager = load_segmentation_model(BUNDLE, "t2", device="cpu", runtime="torch")
    scripted = load_segmentation_model(BUNDLE, "t2", model_file=BUNDLE / "models" / "model_t2.ts", device="cpu")
    assert (eager.kind, scripted.kind) == ("pytorch", "torchscript")
    data = eager.preprocess(image)
    a, b = eager.logits(data["image"].unsqueeze(0)), scripted.logits(data["image"].unsqueeze(0))
    assert torch.allclose(a, b, atol=1e-4)
    mask_a, _ = eager.segment(image)
    mask_b, _ = scripted.segment(image)
    assert np.array_equal(mask_a, mask_b)
    # the shipped T2 model finds the lesion of a patient from a center it never saw
    label = next((manifest.parent / "labels").glob("*_t2_seg.nii.gz"))
    reference = np.asanyarray(nib.load(label).dataobj) > 0
    dice = 2 * (mask_a.astype(bool) & reference).sum() / (mask_a.astype(bool).sum() + reference.sum())
    assert dice > 0.6, dice
