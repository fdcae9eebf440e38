"""Synthetic DMG cohort generator: layout, determinism, geometry, masks, contrasts, status, previews."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy.special import expit

from pipeline.data.contrast import SEQUENCE_CONTRASTS, render_contrast, slab_kernel
from pipeline.data.h3k27m import draw_h3k27m, h3k27m_log_odds
from pipeline.data.lesion import SITES, render_lesion, sample_lesion_spec
from pipeline.data.preview import radiological_axial_slice
from pipeline.data.scanner import (
    CENTER_PRESETS,
    IN_PLANE_RANGE_MM,
    MATRIX_SIZES,
    SLICE_THICKNESS_RANGE_MM,
    center_profile,
    storage_orientation,
)
from pipeline.data.synthetic import SEQUENCES, generate_cohort
from pipeline.data.template import load_template

CONTRACT_COLUMNS = ["patient_id", "center", "t1c", "t2", "flair", "label_t1c", "label_t2", "label_flair", "h3k27m"]
PRESET_CENTERS = ("center_a", "center_b", "center_c")
LIGHT_CENTER = "hospital_3"  # hashed profile with 256/320 matrices: real geometry, quick to generate


def _rows(manifest: Path) -> list[dict[str, str]]:
    with open(manifest, newline="") as f:
        return list(csv.DictReader(f))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """Three lesion patients, one per preset center, with previews."""
    out = tmp_path_factory.mktemp("synth")
    return generate_cohort(out, 3, centers=PRESET_CENTERS, seed=0, preview=True, workers=2, progress=False)


@pytest.fixture(scope="module")
def light_pair(tmp_path_factory) -> tuple[Path, Path]:
    """The same small cohort built in-process and with two worker processes."""
    a = generate_cohort(tmp_path_factory.mktemp("one"), 2, centers=("center_b", LIGHT_CENTER), seed=7,
                        preview=True, workers=1, progress=False)
    b = generate_cohort(tmp_path_factory.mktemp("two"), 2, centers=("center_b", LIGHT_CENTER), seed=7,
                        preview=True, workers=2, progress=False)
    return a, b


def test_manifest_layout(cohort: Path):
    root = cohort.parent
    rows = _rows(cohort)
    with open(cohort, newline="") as f:
        header = next(csv.reader(f))
    assert header[:9] == CONTRACT_COLUMNS
    assert [r["patient_id"] for r in rows] == ["synth_0000", "synth_0001", "synth_0002"]
    assert [r["center"] for r in rows] == list(PRESET_CENTERS)
    for r in rows:
        for seq in SEQUENCES:
            assert r[seq] == f"images/{r['patient_id']}_{seq}.nii.gz"
            assert r[f"label_{seq}"] == f"labels/{r['patient_id']}_{seq}_seg.nii.gz"
            assert (root / r[seq]).is_file() and (root / r[f"label_{seq}"]).is_file()
        assert (root / "preview" / f"{r['patient_id']}.png").stat().st_size > 10_000
        assert r["site"] in SITES
    params = json.loads((root / "synth.json").read_text())
    assert params["seed"] == 0 and params["n_patients"] == 3 and params["centers"] == list(PRESET_CENTERS)
    assert set(params["center_profiles"]) == set(PRESET_CENTERS)
    assert not [p for p in root.rglob("*") if p.name.startswith(".")], "temporary files left behind"


def test_same_seed_is_byte_identical_for_any_worker_count(light_pair):
    a, b = light_pair
    files_a, files_b = _files(a.parent), _files(b.parent)
    assert len(files_a) == 2 * 2 * len(SEQUENCES) + 2 + 2
    assert files_a.keys() == files_b.keys()
    different = [name for name in files_a if files_a[name] != files_b[name]]
    assert not different


def test_different_seed_differs(light_pair, tmp_path):
    a, _ = light_pair
    c = generate_cohort(tmp_path, 1, centers=("center_b",), seed=8, workers=1, progress=False)
    img_a = nib.load(a.parent / "images" / "synth_0000_t2.nii.gz")
    img_c = nib.load(c.parent / "images" / "synth_0000_t2.nii.gz")
    assert img_a.shape != img_c.shape or not np.array_equal(img_a.get_fdata(), img_c.get_fdata())
    assert _rows(a)[0] != _rows(c)[0]


def test_clinical_geometry_and_headers(cohort: Path):
    root = cohort.parent
    for r in _rows(cohort):
        profile = center_profile(r["center"])
        for seq in SEQUENCES:
            img = nib.load(root / r[seq])
            hdr = img.header
            nx, ny, nz = img.shape
            dx, dy, dz = hdr.get_zooms()
            assert nx == ny and nx in MATRIX_SIZES and nx in profile.matrices
            assert dx == pytest.approx(dy) and IN_PLANE_RANGE_MM[0] <= dx <= IN_PLANE_RANGE_MM[1]
            assert SLICE_THICKNESS_RANGE_MM[0] <= dz <= SLICE_THICKNESS_RANGE_MM[1]
            assert 200 <= nx * dx <= 256  # field of view
            assert int(hdr["qform_code"]) == 1 and int(hdr["sform_code"]) == 1
            np.testing.assert_allclose(hdr.get_qform(), img.affine, atol=1e-4)
            np.testing.assert_allclose(hdr.get_sform(), img.affine, atol=1e-4)
            np.testing.assert_allclose(np.linalg.norm(img.affine[:3, :3], axis=0), (dx, dy, dz), rtol=1e-5)
            assert "".join(nib.aff2axcodes(img.affine)) == profile.orientation
            assert abs(img.affine[2, 2]) == pytest.approx(dz)  # axial: voxel k steps along world z
            assert img.get_data_dtype() == np.int16
            corners = nib.affines.apply_affine(img.affine, [[0, 0, 0], [nx - 1, ny - 1, nz - 1]])
            zmin, zmax = corners[:, 2].min(), corners[:, 2].max()
            assert zmin < -60 and zmax > 70  # whole brain (MNI z about -72..82, scaled a little)


def test_masks_binary_on_image_grid_and_at_midline_site(cohort: Path):
    root = cohort.parent
    for r in _rows(cohort):
        site = np.array(SITES[r["site"]])
        for seq in SEQUENCES:
            img = nib.load(root / r[seq])
            lab = nib.load(root / r[f"label_{seq}"])
            data = np.asanyarray(lab.dataobj)
            assert lab.shape == img.shape
            np.testing.assert_allclose(lab.affine, img.affine, atol=1e-6)
            assert data.dtype == np.uint8 and set(np.unique(data)) <= {0, 1}
            if seq == "t1c":
                assert (r["enhancement"] == "none") <= (data.sum() == 0)
                continue
            assert data.sum() > 0
            centroid = nib.affines.apply_affine(lab.affine, np.argwhere(data > 0).mean(axis=0))
            assert np.linalg.norm(centroid - site) < 15.0, (r["patient_id"], seq, centroid, site)
        volume = float(r["lesion_volume_ml"])
        assert 1.0 < volume < 40.0


def test_lesion_contrast_in_each_sequence(cohort: Path):
    root = cohort.parent
    for r in _rows(cohort):
        masks = {seq: np.asanyarray(nib.load(root / r[f"label_{seq}"]).dataobj) > 0 for seq in SEQUENCES}
        for seq in SEQUENCES:
            image = nib.load(root / r[seq]).get_fdata(dtype=np.float32)
            brain = image > 0.25 * np.percentile(image, 99.5)
            whole = masks[seq] if seq != "t1c" else None
            if seq == "t1c":
                # non-enhancing tumour is hypointense; T1C grid differs, so use the enhancing mask only
                enh = masks["t1c"]
                if enh.any():
                    assert image[enh].mean() > np.percentile(image[brain & ~enh], 75)
                continue
            assert brain[whole].mean() > 0.95, "lesion must lie inside the brain"
            assert image[whole].mean() > 1.2 * image[brain & ~whole].mean()


@pytest.mark.parametrize("index", [0, 1, 2])  # seed 5: no, ring and patchy enhancement
def test_tissue_and_lesion_contrasts(index):
    template = load_template()
    rng = np.random.default_rng([5, index])
    spec = sample_lesion_spec(rng)
    lesion = render_lesion(template, spec, rng)
    plain = np.zeros(template.t1.shape, bool)
    plain[lesion.box] = (lesion.whole > 0.8) & (lesion.enhancing < 0.02) & (lesion.necrotic < 0.02)
    enhancing = np.zeros(template.t1.shape, bool)
    enhancing[lesion.box] = lesion.enhancing > 0.7
    assert plain.sum() > 100
    assert enhancing.any() == (spec.enhancement != "none")
    pure = {k: (getattr(template, k) > 0.9) & ~plain & ~enhancing for k in ("gm", "wm", "csf")}
    mean = {}
    for seq in SEQUENCES:
        image, _ = render_contrast(template, SEQUENCE_CONTRASTS[seq], lesion, slab_vox=1.0)
        mean[seq] = {k: float(image[m].mean()) for k, m in pure.items()}
        mean[seq]["lesion"] = float(image[plain].mean())
        mean[seq]["enhancing"] = float(image[enhancing].mean()) if enhancing.any() else None
    t2, flair, t1c = mean["t2"], mean["flair"], mean["t1c"]
    assert t2["csf"] > t2["gm"] > t2["wm"] and t2["lesion"] > 1.4 * t2["gm"]
    assert flair["csf"] < 0.5 * flair["wm"] and flair["lesion"] > 1.4 * flair["gm"]
    assert t1c["wm"] > t1c["gm"] > t1c["csf"] and t1c["lesion"] < 0.85 * t1c["gm"]
    if enhancing.any():
        assert t1c["enhancing"] > 1.2 * t1c["wm"]


def test_lesion_free_cohort(tmp_path):
    manifest = generate_cohort(tmp_path, 1, centers=(LIGHT_CENTER,), seed=3, lesion_free=True, workers=1,
                               progress=False)
    row = _rows(manifest)[0]
    assert row["h3k27m"] == "" and row["site"] == ""
    for seq in SEQUENCES:
        lab = nib.load(manifest.parent / row[f"label_{seq}"])
        img = nib.load(manifest.parent / row[seq])
        assert lab.shape == img.shape and not np.asanyarray(lab.dataobj).any()
        assert np.asanyarray(img.dataobj).max() > 0
    assert json.loads((manifest.parent / "synth.json").read_text())["lesion_free"] is True


def test_h3k27m_labels_and_model(cohort: Path):
    assert {r["h3k27m"] for r in _rows(cohort)} <= {"0", "1"}
    assert h3k27m_log_odds("pons", 0.0) > h3k27m_log_odds("thalamus_left", 0.0)
    assert h3k27m_log_odds("pons", 0.0) > h3k27m_log_odds("pons", 0.3)
    # Overall rate with the generator's own lesion distribution, and imperfect dependence on imaging.
    template = load_template()
    status, probs = [], []
    for i in range(24):
        rng = np.random.default_rng([123, i])
        spec = sample_lesion_spec(rng)
        lesion = render_lesion(template, spec, rng)
        probs.append(expit(h3k27m_log_odds(spec.site, lesion.enhancing_fraction)))  # imaging only, no noise
        status.append(draw_h3k27m(rng, spec.site, lesion.enhancing_fraction))
    assert 0.5 <= np.mean(status) <= 0.9
    assert 0.6 <= np.mean(probs) <= 0.8
    assert max(probs) < 0.97 and min(probs) > 0.2  # imaging raises the odds but never decides


def test_lesion_stays_in_tissue_and_components_nest():
    template = load_template()
    for i in range(6):
        rng = np.random.default_rng([9, i])
        spec = sample_lesion_spec(rng)
        lesion = render_lesion(template, spec, rng)
        tissue = template.gm[lesion.box] + template.wm[lesion.box]
        assert np.all(lesion.whole <= tissue + 1e-6)
        assert np.all(lesion.enhancing + lesion.necrotic <= lesion.whole + 1e-6)
        assert (spec.enhancement == "none") == (lesion.enhancing.sum() == 0)
        assert lesion.volume_ml > 1.0


def test_center_profiles_are_distinct_and_stable():
    presets = [CENTER_PRESETS[c] for c in PRESET_CENTERS]
    assert len({(p.intensity_scale, p.noise_level, p.bias_strength) for p in presets}) == 3
    assert {p.orientation for p in presets} == {"RAS", "LPS"}
    assert center_profile("somewhere") == center_profile("somewhere")
    assert center_profile("somewhere") != center_profile("elsewhere")
    for name in ("somewhere", "elsewhere", LIGHT_CENTER):
        p = center_profile(name)
        assert p.orientation in ("RAS", "LPS") and set(p.matrices) <= set(MATRIX_SIZES)
        assert all(SLICE_THICKNESS_RANGE_MM[0] <= t <= SLICE_THICKNESS_RANGE_MM[1] for t in p.slice_thickness_mm)


def test_storage_orientation_keeps_world_coordinates():
    data = np.random.default_rng(0).random((4, 5, 3)).astype(np.float32)
    affine = np.diag([0.5, 0.5, 5.0, 1.0])
    affine[:3, 3] = [-10, -20, -30]
    lps, lps_affine = storage_orientation(data, affine, "LPS")
    assert "".join(nib.aff2axcodes(lps_affine)) == "LPS"
    for ijk in [(0, 0, 0), (3, 1, 2), (1, 4, 1)]:
        world = nib.affines.apply_affine(affine, ijk)
        ijk_lps = np.rint(nib.affines.apply_affine(np.linalg.inv(lps_affine), world)).astype(int)
        assert lps[tuple(ijk_lps)] == data[ijk]


def test_preview_is_radiological_for_ras_and_lps_storage():
    data = np.zeros((6, 8, 3), dtype=np.float32)
    data[3:, :, :] = 1.0  # patient's right half (x > 0)
    data[:, 6:, :] = 2.0  # anterior rows
    affine = np.diag([1.0, 1.0, 5.0, 1.0])
    affine[:3, 3] = [-2.5, -3.5, -5.0]
    ras = nib.Nifti1Image(data, affine)
    lps = nib.Nifti1Image(*storage_orientation(data, affine, "LPS"))
    shown = radiological_axial_slice(ras, 0.0)
    np.testing.assert_array_equal(shown, radiological_axial_slice(lps, 0.0))
    assert shown[-1, 0] == 1.0 and shown[-1, -1] == 0.0  # patient's right on the viewer's left
    assert np.all(shown[0] == 2.0)  # anterior at the top


def test_slab_kernel_matches_thickness():
    for thickness in (5.0, 5.5, 6.0):
        k = slab_kernel(thickness)
        assert k.sum() == pytest.approx(1.0)
        assert (k / k.max()).sum() == pytest.approx(thickness)
        np.testing.assert_allclose(k, k[::-1])


@pytest.mark.parametrize("kwargs", [dict(n_patients=0), dict(n_patients=1, centers=[]), dict(n_patients=1, workers=0)])
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        generate_cohort(tmp_path, progress=False, **kwargs)
