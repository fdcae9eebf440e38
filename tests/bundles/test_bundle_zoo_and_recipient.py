"""The MONAI Model Zoo's own checks on both bundles, and a recipient who has MONAI but not this project."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from pipeline.bundle_sharing import pack_bundle
from pipeline.bundle_trust.carried_code import carried_files
from pipeline.bundle_trust.trust import use_bundle_code
from pipeline.cli import main
from transforms import build_transforms

REPO = Path(__file__).resolve().parents[2]
SEG_BUNDLE = REPO / "bundles" / "dmg_mscg_segmentation"
H3_BUNDLE = REPO / "bundles" / "h3k27m_classification"
ZOO_CHECK = REPO.parent / "shared" / "model-zoo-check" / "check_bundle.py"
BLOCKER = '''import sys
class _NoProjectPackages:
    """A recipient without dmg-pipeline: its packages cannot be imported."""
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pipeline", "transforms", "evaluation"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)")
        return None
sys.meta_path.insert(0, _NoProjectPackages())
'''


def _quiet_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", **extra}


def _zoo_check(bundle: Path, cohort: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ZOO_CHECK), str(bundle), "--no-pip", "--dataset_dir", str(cohort)],
                          capture_output=True, text=True, env=_quiet_env(), timeout=600)


pytestmark = pytest.mark.skipif(not ZOO_CHECK.is_file(), reason=f"{ZOO_CHECK} is not there")


def test_segmentation_bundle_passes_every_zoo_check(tiny_cohort):
    result = _zoo_check(SEG_BUNDLE, tiny_cohort.parent)
    summary = result.stdout.strip().splitlines()
    assert result.returncode == 0, "\n".join(summary[-20:])
    assert summary[-1] == "8 passed, 0 failed"  # all but the requirements check, which asks the package index


def test_h3k27m_bundle_passes_every_zoo_check(tiny_cohort_t2_t1c):
    result = _zoo_check(H3_BUNDLE, tiny_cohort_t2_t1c.parent)  # the shipped model reads T2 and T1C
    summary = result.stdout.strip().splitlines()
    assert result.returncode == 0, "\n".join(summary[-20:])
    assert summary[-1] == "8 passed, 0 failed"  # all but the requirements check, which asks the package index


def test_carried_code_is_what_the_packages_generate():
    """`dmg bundle ship` was re-run after the last change of a carried module (else: re-run it)."""
    for rel, content in carried_files().items():
        assert (SEG_BUNDLE / rel).read_bytes() == content, f"{rel} is stale: run dmg bundle ship {SEG_BUNDLE}"


def test_config_preprocessing_is_the_package_pipeline(tiny_cohort):
    """inference.json spells the transforms out for recipients; they must stay build_transforms('infer')."""
    image = next((tiny_cohort.parent / "images").glob("*.nii.gz"))
    parser = ConfigParser()
    parser.read_config(str(SEG_BUNDLE / "configs" / "inference.json"))
    with use_bundle_code(SEG_BUNDLE):
        from_config = parser.get_parsed_content("preprocessing")({"image": str(image)})["image"]
    spatial_size = parser.get_parsed_content("spatial_size")
    from_package = build_transforms("infer", spatial_size=spatial_size)({"image": str(image)})["image"]
    assert from_config.shape == from_package.shape and torch.equal(from_config.as_tensor(), from_package.as_tensor())
    assert torch.equal(from_config.affine, from_package.affine)


def test_monai_only_recipient_gets_the_masks_of_dmg_segment(tiny_cohort, tmp_path, capsys):
    """Pack, unzip, `python -m monai.bundle run` where pipeline/transforms/evaluation cannot be imported."""
    packed = pack_bundle(SEG_BUNDLE, tmp_path / "dmg_mscg_segmentation.zip").out
    with zipfile.ZipFile(packed) as archive:  # the recipient's plain unzip
        archive.extractall(tmp_path / "received")
    bundle = tmp_path / "received" / "dmg_mscg_segmentation"
    images = tmp_path / "images"
    images.mkdir()
    for image in sorted((tiny_cohort.parent / "images").glob("*.nii.gz")):
        (images / image.name).symlink_to(image)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = _quiet_env(PYTHONPATH=str(site))
    probe = subprocess.run([sys.executable, "-c", "import transforms"], capture_output=True, text=True, env=env)
    assert probe.returncode != 0 and "blocked" in probe.stderr  # the recipient really lacks the packages

    run = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json", "--bundle_root", ".",
         "--dataset_dir", str(images), "--output_dir", str(tmp_path / "monai_out"), "--num_workers", "0"],
        cwd=bundle, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]

    assert main(["segment", "--bundle", str(SEG_BUNDLE), "--cohort", str(tiny_cohort), "--sequence", "t2",
                 "--out", str(tmp_path / "dmg_out"), "--runtime", "torch"]) == 0
    capsys.readouterr()
    names = sorted(p.name for p in images.iterdir())
    masks = sorted(p.name for p in (tmp_path / "monai_out").glob("*_seg.nii.gz"))
    assert masks == [n.replace(".nii.gz", "_seg.nii.gz") for n in names]  # <image stem>_seg.nii.gz, every image
    foreground = 0
    for name in masks:
        recipient, ours = nib.load(tmp_path / "monai_out" / name), nib.load(tmp_path / "dmg_out" / name)
        source = nib.load(images / name.replace("_seg.nii.gz", ".nii.gz"))
        assert recipient.shape == source.shape and np.allclose(recipient.affine, source.affine)
        a, b = np.asanyarray(recipient.dataobj), np.asanyarray(ours.dataobj)
        assert np.array_equal(a, b), name
        foreground += int(a.sum())
    assert 0 < foreground < sum(np.prod(nib.load(images / n).shape) for n in names)  # not trivially empty or full
