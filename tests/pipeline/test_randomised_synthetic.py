"""Randomised synthetic styles: determinism, parameters inside their ranges, skull and scalp by default,
held-out ranges outside the training ranges, artefacts and head geometry."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from pipeline.data.artefacts import apply_ghosting, apply_gibbs
from pipeline.data.style import STYLES, sample_scanner, sample_sequence_contrasts, style_by_name
from pipeline.data.synthetic import generate_cohort


def _ranges(style) -> dict[str, tuple[float, float]]:
    return {f.name: getattr(style, f.name) for f in fields(style)
            if isinstance(getattr(style, f.name), tuple) and len(getattr(style, f.name)) == 2
            and all(isinstance(v, float) for v in getattr(style, f.name))}


@pytest.fixture(scope="module")
def raw_cohort(tmp_path_factory) -> Path:
    return generate_cohort(tmp_path_factory.mktemp("raw"), 2, seed=5, style="randomised", workers=1, progress=False)


@pytest.fixture(scope="module")
def stripped_cohort(tmp_path_factory) -> Path:
    return generate_cohort(tmp_path_factory.mktemp("stripped"), 2, seed=5, style="randomised", skull_stripped=True,
                           workers=1, progress=False)


def _volumes(manifest: Path, seq: str = "t2") -> list[tuple[np.ndarray, np.ndarray, nib.Nifti1Image]]:
    rows = pd.read_csv(manifest, dtype=str)
    out = []
    for _, r in rows.iterrows():
        img = nib.load(manifest.parent / r[seq])
        out.append((np.asarray(img.dataobj, dtype=np.float32) * float(img.dataobj.slope),
                    np.asarray(nib.load(manifest.parent / r[f"label_{seq}"]).dataobj), img))
    return out


def test_same_seed_same_bytes_other_seed_differs(raw_cohort: Path, tmp_path: Path):
    again = generate_cohort(tmp_path / "again", 1, seed=5, style="randomised", workers=1, progress=False)
    a = (raw_cohort.parent / "images" / "synth_0000_t2.nii.gz").read_bytes()
    assert (again.parent / "images" / "synth_0000_t2.nii.gz").read_bytes() == a
    other = generate_cohort(tmp_path / "other", 1, seed=6, style="randomised", workers=1, progress=False,
                            skull_stripped=True)
    assert (other.parent / "images" / "synth_0000_t2.nii.gz").read_bytes() != a


def test_recorded_parameters_stay_in_the_style_ranges(raw_cohort: Path):
    style = style_by_name("randomised")
    for path in sorted((raw_cohort.parent / "parameters").glob("*.json")):
        params = json.loads(path.read_text())
        assert params["style"] == "randomised" and params["skull_stripped"] is False
        for seq, acq in params["sequences"].items():
            img = nib.load(raw_cohort.parent / "images" / f"{path.stem}_{seq}.nii.gz")
            zooms = img.header.get_zooms()
            assert style.slice_thickness_mm[0] <= acq["thickness_mm"] <= style.slice_thickness_mm[1]
            assert zooms[2] == pytest.approx(acq["thickness_mm"], abs=1e-3)
            # the matrix is rounded from FOV / in-plane: within a few percent of the drawn range
            assert style.in_plane_mm[0] * 0.97 <= zooms[0] <= style.in_plane_mm[1] * 1.03
            assert style.tilt_deg[0] <= abs(acq["tilt_deg"][0]) <= style.tilt_deg[1]
            for key in ("bias_strength", "noise_level", "gamma"):
                lo, hi = getattr(style, key)
                assert lo <= acq[key] <= hi, key
            # the slice normal is tilted by the drawn pitch (oblique axial planes)
            normal = img.affine[:3, 2] / np.linalg.norm(img.affine[:3, 2])
            tilt = np.degrees(np.arccos(abs(normal[2])))
            assert tilt == pytest.approx(np.hypot(*acq["tilt_deg"]), abs=1.0)
        lesion = params["lesion"]
        assert lesion["family"] in ("ellipsoid", "lobulated", "infiltrative", "expansile", "small")
        assert style.texture_sd[0] <= lesion["texture_sd"] <= style.texture_sd[1]
        lo, hi = style.global_scale
        assert lo * style.axis_scale[0] * 0.99 <= params["anatomy_scale"] <= hi * style.axis_scale[1] * 1.01


def test_skull_and_scalp_by_default_and_absent_when_stripped(raw_cohort: Path, stripped_cohort: Path):
    """Raw scans have bright tissue (scalp fat) outside the labelled brain region and reach further out;
    skull-stripped scans have a brain on black."""
    def head_extent(image: np.ndarray) -> float:
        fg = image > 0.15 * np.percentile(image, 99.5)
        return float(fg.mean())

    raw = [head_extent(v) for v, _, _ in _volumes(raw_cohort, "t1c")]
    stripped = [head_extent(v) for v, _, _ in _volumes(stripped_cohort, "t1c")]
    assert min(raw) > 1.2 * max(stripped), (raw, stripped)
    synth = json.loads((stripped_cohort.parent / "synth.json").read_text())
    assert synth["skull_stripped"] is True and synth["style"] == "randomised"


def test_masks_binary_on_grid_and_not_empty(raw_cohort: Path):
    for image, label, img in _volumes(raw_cohort):
        assert label.shape == image.shape and set(np.unique(label)) <= {0, 1} and label.sum() > 0
        assert np.isfinite(image).all()


def test_heldout_ranges_lie_outside_the_training_ranges():
    train, held = _ranges(STYLES["randomised"]), _ranges(STYLES["heldout"])
    outside = [k for k in ("slice_thickness_mm", "in_plane_mm", "tilt_deg", "bias_strength", "noise_level",
                           "displacement_rms_mm", "global_scale", "texture_sd", "skull_mm", "fat_mm")
               if held[k][0] >= train[k][1] or held[k][1] <= train[k][0]]
    assert len(outside) == 10, outside


def test_sampled_contrasts_keep_each_sequences_order():
    rng = np.random.default_rng(0)
    style = STYLES["randomised"]
    for _ in range(200):
        c = sample_sequence_contrasts(rng, style)
        assert c["t2"].csf > c["t2"].gm > c["t2"].wm and c["t2"].lesion > c["t2"].gm
        assert c["flair"].csf < c["flair"].wm and c["flair"].lesion > c["flair"].gm
        assert c["t1c"].wm > c["t1c"].gm > c["t1c"].csf and c["t1c"].enhancing > c["t1c"].wm
        scanner = sample_scanner(rng, style)
        assert style.slice_thickness_mm[0] <= scanner.thickness_mm <= style.slice_thickness_mm[1]


def test_gibbs_and_ghosting_change_the_image_and_keep_its_shape():
    vol = np.zeros((3, 64, 64), np.float32)
    vol[:, 16:48, 20:44] = 1.0
    rng = np.random.default_rng(0)
    ringing, ghosts = apply_gibbs(vol, 0.5), apply_ghosting(vol, 0.06, rng)
    assert ringing.shape == ghosts.shape == vol.shape
    assert np.abs(ringing - vol).max() > 0.05
    # ghosts at half the FOV along y: signal appears where the head is not
    assert ghosts[:, :8, 20:44].mean() > 0.01 and vol[:, :8, 20:44].max() == 0
    assert apply_gibbs(vol, 0.0) is vol and apply_ghosting(vol, 0.0, rng) is vol


@pytest.mark.parametrize("kwargs,message", [({"style": "fancy"}, "unknown style 'fancy'"),
                                            ({"skull_stripped_fraction": 1.5}, "skull_stripped_fraction")])
def test_bad_style_arguments(tmp_path: Path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_cohort(tmp_path, 1, workers=1, progress=False, **kwargs)
