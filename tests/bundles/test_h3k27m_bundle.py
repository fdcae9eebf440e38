"""The H3K27M bundle on a tiny cohort: masked pretraining, co-training from the pretrained encoder, resume,
inference (the MONAI workflow of inference.json: CSV and masks on the input grid, the same as
predict_cohort_status)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from monai.bundle import run as run_bundle

from tests.helpers import ONE_CHANNEL_H3K27M

CONFIGS = Path(__file__).resolve().parents[2] / "bundles" / "h3k27m_classification" / "configs"
TINY = {"base_width": 8, "spatial_size": 64, "num_workers": 0, "batch_size": 8}

pytestmark = pytest.mark.usefixtures("single_thread")


def _run(config: str, root: Path, **overrides) -> None:
    run_bundle(config_file=str(CONFIGS / config), meta_file=str(CONFIGS / "metadata.json"),
               logging_file=str(CONFIGS / "logging.conf"), bundle_root=str(root), **TINY, **overrides)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_cohort) -> Path:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("h3k27m")
    _run("pretrain.json", root, pretrain_dir=str(tiny_cohort.parent), num_epochs=1)
    _run("train.json", root, dataset_dir=str(tiny_cohort.parent), n_folds=3, num_epochs=2, val_interval=1,
         pretrained_encoder=str(root / "runs" / "pretrain_full" / "model.pt"))
    return root


def test_pretraining_writes_an_encoder_that_co_training_loads(trained: Path):
    from pipeline.engines.status_handlers import load_pretrained_encoder_file
    from pipeline.networks import build_h3k27m_net

    pretrained = trained / "runs" / "pretrain_full" / "model.pt"
    net = build_h3k27m_net("full", base_width=8, img_size=64)
    report = load_pretrained_encoder_file(net, pretrained)
    assert report.loaded and not report.not_pretrained
    state = torch.load(pretrained, weights_only=True)
    key = "resnet.conv1.weight"
    assert torch.equal(net.encoder.state_dict()[key], state[f"encoder.{key}"])


def test_co_training_saves_checkpoint_and_best_model(trained: Path):
    run = trained / "runs" / "full_fold0"
    ckpt = torch.load(run / "checkpoint_epoch=2.pt", weights_only=True)
    assert set(ckpt) == {"network", "optimizer", "lr_scheduler", "validation", "trainer"}
    assert np.isfinite(float(ckpt["validation"]["best"]))  # the best validation score travels with the checkpoint
    assert ckpt["trainer"]["iteration"] == 2 * ckpt["trainer"]["epoch_length"]
    assert ckpt["lr_scheduler"]["last_epoch"] == 2
    assert (run / "model.pt").exists()


def test_resume_continues_from_the_last_epoch(trained: Path, tiny_cohort: Path):
    best_before = float(torch.load(trained / "runs" / "full_fold0" / "checkpoint_epoch=2.pt",
                                   weights_only=True)["validation"]["best"])
    _run("train.json", trained, dataset_dir=str(tiny_cohort.parent), n_folds=3, num_epochs=3, val_interval=1)
    run = trained / "runs" / "full_fold0"
    ckpt = torch.load(run / "checkpoint_epoch=3.pt", weights_only=True)
    assert ckpt["trainer"]["iteration"] == 3 * ckpt["trainer"]["epoch_length"]
    steps = {int(s["momentum_buffer"] is not None) for s in ckpt["optimizer"]["state"].values()}
    assert steps == {1} and ckpt["lr_scheduler"]["last_epoch"] == 3
    assert not (run / "checkpoint_epoch=2.pt").exists()
    assert float(ckpt["validation"]["best"]) >= best_before  # restored, not restarted from -inf


def test_bundle_inference_is_what_predict_cohort_status_gives(trained: Path, tiny_cohort: Path, tmp_path: Path):
    """inference.json (Dataset, SliceInferer, SupervisedEvaluator, PatientStatusWriter) gives the table and the
    masks of predict_cohort_status (what `dmg status` runs), with the config's temperature and threshold."""
    from pipeline.data.datalists import cohort_datalist
    from pipeline.inference.status_cohort import PREDICTION_COLUMNS, predict_cohort_status
    from pipeline.networks import build_h3k27m_net

    weights = trained / "runs" / "full_fold0" / "model.pt"
    out = tmp_path / "bundle"
    _run("inference.json", trained, dataset_dir=str(tiny_cohort.parent), output_dir=str(out), model_file=str(weights),
         temperature=2.5, threshold=0.45, **ONE_CHANNEL_H3K27M)
    net = build_h3k27m_net("full", base_width=8, img_size=64)
    net.load_state_dict(torch.load(weights, weights_only=True))
    ours = predict_cohort_status(net, cohort_datalist(str(tiny_cohort.parent), "t2"), tmp_path / "ours",
                                 spatial_size=64, threshold=0.45, temperature=2.5, progress=False)
    table = pd.read_csv(out / "predictions.csv")
    assert list(table.columns) == list(PREDICTION_COLUMNS)
    assert table.patient_id.tolist() == ours.patient_id.tolist() == pd.read_csv(tiny_cohort).patient_id.tolist()
    np.testing.assert_allclose(table.probability_altered, ours.probability_altered, atol=1e-6)
    np.testing.assert_allclose(table.logit_uncalibrated, ours.logit_uncalibrated, atol=1e-5)
    scaled = 1 / (1 + np.exp(-table.logit_uncalibrated / 2.5))  # the temperature was applied, to the patient logit
    np.testing.assert_allclose(table.probability_altered, scaled, atol=1e-9)
    assert np.abs(table.probability_altered - 1 / (1 + np.exp(-table.logit_uncalibrated))).max() > 1e-3  # it mattered
    for column in ("center", "predicted_status", "slices_used", "h3k27m", "mask", "status"):
        assert table[column].tolist() == ours[column].astype(table[column].dtype).tolist(), column
    assert ((table.probability_altered >= 0.45) == (table.predicted_status == "altered")).all()
    for row in table.itertuples():
        image = nib.load(tiny_cohort.parent / "images" / f"{row.patient_id}_t2.nii.gz")
        mask, reference = nib.load(out / row.mask), nib.load(tmp_path / "ours" / row.mask)
        assert mask.shape == image.shape and row.mask == f"{row.patient_id}_t2_seg.nii.gz"
        np.testing.assert_allclose(mask.affine, image.affine, atol=1e-6)
        assert np.array_equal(np.asanyarray(mask.dataobj), np.asanyarray(reference.dataobj)), row.mask


def test_bundle_inference_on_a_folder_of_images(trained: Path, tiny_cohort: Path, tmp_path: Path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("tiny_00_t2.nii.gz", "tiny_01_t2.nii.gz"):
        (images / name).symlink_to(tiny_cohort.parent / "images" / name)
    _run("inference.json", trained, dataset_dir=str(images), output_dir=str(tmp_path / "out"),
         model_file=str(trained / "runs" / "full_fold0" / "model.pt"), **ONE_CHANNEL_H3K27M)  # as train.json's
    table = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert table.patient_id.tolist() == ["tiny_00_t2", "tiny_01_t2"]  # the image stems
    assert table["mask"].tolist() == ["tiny_00_t2_seg.nii.gz", "tiny_01_t2_seg.nii.gz"]
    assert table.h3k27m.isna().all() and table.probability_altered.between(0, 1).all()
    for name in table["mask"]:
        assert nib.load(tmp_path / "out" / name).shape == nib.load(images / name.replace("_seg", "")).shape


def test_config_preprocessing_is_the_package_pipeline(tiny_cohort_t2_t1c: Path):
    """inference.json spells the transforms out key by key; they must stay build_transforms('infer') with the
    shipped sequences and crop."""
    from monai.bundle import ConfigParser

    from transforms import build_transforms

    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    images = tiny_cohort_t2_t1c.parent / "images"
    item = {"image": str(images / "tiny_01_t2.nii.gz")}  # LPS storage: reoriented
    item.update({seq: str(images / f"tiny_01_{seq}.nii.gz") for seq in parser["extra_sequences"]})
    from_config = parser.get_parsed_content("preprocessing")(dict(item))["image"]
    from_package = build_transforms("infer", spatial_size=parser["spatial_size"],
                                    center_crop_fraction=parser["center_crop_fraction"],
                                    extra_image_keys=tuple(parser["extra_sequences"]))(dict(item))["image"]
    assert from_config.shape[0] == 1 + len(parser["extra_sequences"])
    assert from_config.shape == from_package.shape and torch.equal(from_config.as_tensor(), from_package.as_tensor())
    assert torch.equal(from_config.affine, from_package.affine)


def test_an_unreadable_image_is_skipped_and_reported(tmp_path: Path, tiny_cohort: Path):
    from pipeline.inference.status_cohort import predict_cohort_status
    from pipeline.networks import build_h3k27m_net

    broken = tmp_path / "broken_t2.nii.gz"
    broken.write_bytes(b"not a nifti")
    good = {"image": str(tiny_cohort.parent / "images" / "tiny_00_t2.nii.gz"), "patient_id": "tiny_00"}
    net = build_h3k27m_net("full", base_width=8, img_size=64)
    table = predict_cohort_status(net, [{"image": str(broken), "patient_id": "bad"}, good], tmp_path / "out",
                                  spatial_size=64, progress=False)
    assert table.status.iloc[0].startswith("skipped: ") and "broken_t2.nii.gz" in table.status.iloc[0]
    assert table.status.iloc[1] == "done" and (tmp_path / "out" / "tiny_00_t2_seg.nii.gz").exists()
    assert pd.read_csv(tmp_path / "out" / "predictions.csv").shape[0] == 2


def test_evaluate_config_writes_the_classification_report(trained: Path, tiny_cohort: Path, capsys, tmp_path: Path):
    import json
    import shutil

    cohort = tmp_path / "cohort"  # the tiny cohort as a synthetic one with a status ceiling
    shutil.copytree(tiny_cohort.parent, cohort)
    (cohort / "parameters").mkdir(exist_ok=True)
    rows = pd.read_csv(cohort / "manifest.csv")
    for i, pid in enumerate(rows.patient_id):
        (cohort / "parameters" / f"{pid}.json").write_text(json.dumps({"h3k27m_probability": 0.1 + 0.1 * i}))
    (cohort / "synth.json").write_text(json.dumps({"h3k27m_ceiling": {"status_signal": 1.0}}))
    capsys.readouterr()
    run_bundle(config_file=[str(CONFIGS / "train.json"), str(CONFIGS / "evaluate.json")],
               meta_file=str(CONFIGS / "metadata.json"), logging_file=str(CONFIGS / "logging.conf"),
               bundle_root=str(trained), dataset_dir=str(cohort), n_saliency=2,
               model_file=str(trained / "runs" / "full_fold0" / "model.pt"), **TINY)
    out = trained / "eval" / "external"
    metrics = pd.read_csv(out / "metrics.csv")
    assert {"accuracy", "sensitivity", "specificity", "auroc", "auprc", "dice"} <= set(metrics.metric)
    patients = pd.read_csv(out / "patients.csv")
    assert len(patients) == 8  # every patient with a known status, labelled or not
    assert len(list((out / "saliency").glob("*.png"))) == 2
    for name in ("roc.png", "pr.png", "tsne.png", "report.html"):
        assert (out / name).stat().st_size > 0
    printed = capsys.readouterr().out  # the metrics and where the report is, not only files
    auroc = metrics[(metrics.fold == "external") & (metrics.metric == "auroc")].iloc[0]
    assert f"external (8 patients, 4 altered): Accuracy " in printed
    assert f"AUROC {auroc.value:.3f} [{auroc.ci_low:.3f}, {auroc.ci_high:.3f}]" in printed
    assert f"report: {out / 'report.html'}" in printed
    ceiling = json.loads((out / "metrics.json").read_text())["ceiling"]  # of the 8 scored patients
    assert ceiling["n_patients"] == 8 and ceiling["scope"] == "evaluated patients"
    assert f"ceiling (Bayes-optimal" in printed and f"AUROC {ceiling['bayes_auroc']:.3f}" in printed


def test_cross_validation_report_pools_the_folds_that_have_a_model(trained: Path, tiny_cohort: Path):
    run_bundle(config_file=[str(CONFIGS / "train.json"), str(CONFIGS / "cross_validation.json")],
               meta_file=str(CONFIGS / "metadata.json"), logging_file=str(CONFIGS / "logging.conf"),
               bundle_root=str(trained), dataset_dir=str(tiny_cohort.parent), n_folds=3, n_saliency=1, **TINY)
    metrics = pd.read_csv(trained / "eval" / "cv_full" / "metrics.csv")
    assert set(metrics.fold) == {"fold0", "pooled"}  # only fold 0 was trained
    patients = pd.read_csv(trained / "eval" / "cv_full" / "patients.csv")
    assert len(patients) == 2  # fold 0's validation patients (6 labelled patients, 3 folds)
