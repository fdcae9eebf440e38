"""The MSCG segmentation bundle end to end on a tiny cohort: train, resume, infer, evaluate, export, DDP."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from monai.bundle import ckpt_export, verify_net_in_out
from monai.bundle import run as run_bundle

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "dmg_mscg_segmentation"
CONFIGS = BUNDLE / "configs"
TINY = {"features": [4, 8, 16], "disc_channels": [4, 8, 8, 16], "spatial_size": 32, "num_workers": 0,
        "sw_batch_size": 8}
TRAIN = {**TINY, "sequence": "t2", "variant": "MSCG", "fold": 0, "n_folds": 3, "val_interval": 1}

pytestmark = pytest.mark.usefixtures("single_thread")


def _train(bundle_root: Path, cohort: Path, epochs: int, extra_configs: tuple[str, ...] = ()) -> None:
    run_bundle(config_file=[str(CONFIGS / "train.json"), *map(str, extra_configs)],
               meta_file=str(CONFIGS / "metadata.json"), logging_file=str(CONFIGS / "logging.conf"),
               bundle_root=str(bundle_root), dataset_dir=str(cohort), num_epochs=epochs, **TRAIN)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_cohort) -> Path:
    """Bundle root after 2 epochs of training (output under runs/t2_MSCG_finetune_fold0)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("bundle")
    _train(root, tiny_cohort.parent, epochs=2)
    return root


def _run_dir(root: Path) -> Path:
    return root / "runs" / "t2_MSCG_finetune_fold0"


def test_train_writes_checkpoint_and_best_model(trained: Path):
    run = _run_dir(trained)
    assert (run / "checkpoint_epoch=2.pt").exists() and (run / "model.pt").exists()
    ckpt = torch.load(run / "checkpoint_epoch=2.pt", weights_only=True)
    assert set(ckpt) == {"generator", "discriminator", "g_optimizer", "d_optimizer", "g_lr_scheduler",
                         "d_lr_scheduler", "best_model", "trainer"}
    assert ckpt["trainer"]["iteration"] == 2 * ckpt["trainer"]["epoch_length"]
    assert list(run.glob("events.out.tfevents*")), "TensorBoard logs missing"


def test_resume_restores_epoch_optimizers_and_schedule(trained: Path, tiny_cohort: Path, tmp_path: Path):
    root = tmp_path / "resumed"
    shutil.copytree(trained, root)
    _train(root, tiny_cohort.parent, epochs=3)
    run = _run_dir(root)
    last = torch.load(run / "checkpoint_epoch=3.pt", weights_only=True)
    per_epoch = last["trainer"]["epoch_length"]
    assert last["trainer"]["iteration"] == 3 * per_epoch and last["trainer"]["max_epochs"] == 3
    # optimizer state continued: AdamW's step counter counts all three epochs' iterations
    for key in ("g_optimizer", "d_optimizer"):
        steps = {float(s["step"]) for s in last[key]["state"].values()}
        assert steps == {3.0 * per_epoch}, key
    # cosine schedule continued from epoch 2 (T_max = num_epochs of the resumed run)
    assert last["g_lr_scheduler"]["last_epoch"] == 3 and last["d_lr_scheduler"]["last_epoch"] == 3
    assert not (run / "checkpoint_epoch=2.pt").exists()  # n_saved=1 keeps only the newest


def test_inference_writes_masks_on_the_input_grid(trained: Path, tiny_cohort: Path, tmp_path: Path):
    out = tmp_path / "pred"
    run_bundle(config_file=str(CONFIGS / "inference.json"), meta_file=str(CONFIGS / "metadata.json"),
               logging_file=str(CONFIGS / "logging.conf"), bundle_root=str(trained),
               dataset_dir=str(tiny_cohort.parent), model_file=str(_run_dir(trained) / "model.pt"),
               output_dir=str(out), **{k: TINY[k] for k in ("features", "spatial_size", "num_workers")})
    manifest = pd.read_csv(tiny_cohort)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{pid}_t2_seg.nii.gz" for pid in manifest.patient_id)
    for row in manifest.itertuples():
        image = nib.load(tiny_cohort.parent / row.t2)
        mask = nib.load(out / f"{row.patient_id}_t2_seg.nii.gz")
        assert mask.shape == image.shape
        np.testing.assert_allclose(mask.affine, image.affine, atol=1e-6)
        assert set(np.unique(np.asanyarray(mask.dataobj))) <= {0, 1}


def test_evaluate_config_reports_dice_per_case(trained: Path, tiny_cohort: Path):
    run_bundle(config_file=[str(CONFIGS / "train.json"), str(CONFIGS / "evaluate.json")],
               meta_file=str(CONFIGS / "metadata.json"), logging_file=str(CONFIGS / "logging.conf"),
               bundle_root=str(trained), dataset_dir=str(tiny_cohort.parent),
               model_file=str(_run_dir(trained) / "model.pt"), **TRAIN)
    raw = pd.read_csv(trained / "eval" / "t2" / "val_mean_dice_raw.csv")
    assert len(raw) == 6 and raw["mean"].between(0, 1).all()


def test_verify_and_torchscript_export_give_the_same_masks(trained: Path, tiny_cohort: Path, tmp_path: Path):
    common = {"meta_file": str(CONFIGS / "metadata.json"), "config_file": str(CONFIGS / "inference.json"),
              "features": TINY["features"]}
    verify_net_in_out(net_id="network_def", n=2, **common)
    ts_path = tmp_path / "model_t2.ts"
    ckpt_export(net_id="network_def", filepath=str(ts_path), ckpt_file=str(_run_dir(trained) / "model.pt"), **common)
    scripted = torch.jit.load(str(ts_path))
    from pipeline.networks import build_generator
    eager = build_generator("MSCG", features=TINY["features"])
    eager.load_state_dict(torch.load(_run_dir(trained) / "model.pt", weights_only=True))
    eager.eval()
    from transforms import build_transforms
    volume = build_transforms("infer", spatial_size=32)({"image": str(tiny_cohort.parent / "images/tiny_00_t2.nii.gz")})
    slices = volume["image"].as_tensor().permute(3, 0, 1, 2)  # (D, 1, H, W)
    with torch.inference_mode():
        a, b = eager(slices), scripted(slices)
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.equal(a > 0, b > 0)


@pytest.mark.slow
def test_torchrun_two_process_gloo_epoch(tiny_cohort: Path, tmp_path: Path):
    overrides = [f"--{k} {v!s}".replace(" ", "=", 1) if not isinstance(v, list) else f"--{k}={v}".replace(" ", "")
                 for k, v in {**TRAIN, "num_epochs": 1}.items()]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
           "-m", "monai.bundle", "run",
           "--config_file", f"['{CONFIGS / 'train.json'}','{CONFIGS / 'multi_gpu_train.json'}']",
           "--meta_file", str(CONFIGS / "metadata.json"), "--logging_file", str(CONFIGS / "logging.conf"),
           "--bundle_root", str(tmp_path), "--dataset_dir", str(tiny_cohort.parent), *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run = tmp_path / "runs" / "t2_MSCG_finetune_fold0"
    ckpt = torch.load(run / "checkpoint_epoch=1.pt", weights_only=True)
    assert ckpt["trainer"]["iteration"] == ckpt["trainer"]["epoch_length"]
    assert not any(k.startswith("module.") for k in ckpt["generator"])  # DDP wrapper not saved
    # TensorBoard writers only on rank 0: one trainer and one validator event file, none from rank 1
    assert len(list(run.glob("events.out.tfevents.*"))) == 2


def test_finetune_stage_starts_from_the_pretrained_generator(trained: Path, tiny_cohort: Path, tmp_path: Path):
    pretrained = _run_dir(trained) / "model.pt"
    run_bundle(config_file=str(CONFIGS / "train.json"), meta_file=str(CONFIGS / "metadata.json"),
               logging_file=str(CONFIGS / "logging.conf"), bundle_root=str(tmp_path),
               dataset_dir=str(tiny_cohort.parent), num_epochs=1, pretrained_ckpt=str(pretrained),
               learning_rate=0.0, **TRAIN)
    expected = torch.load(pretrained, weights_only=True)
    got = torch.load(_run_dir(tmp_path) / "model.pt", weights_only=True)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)  # lr 0: the loaded weights are kept
