"""``dmg status`` with a randomly initialised tiny H3K27M bundle: manifest, datalist and BraTS-folder cohorts,
an unreadable patient skipped and named, the bundle's temperature and threshold applied, the report with
per-center metrics, calibration and ceiling, a refused bundle, and the status part of ``dmg demo``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import expit

from evaluation.calibration import expected_calibration_error
from pipeline.cli import main
from pipeline.networks import build_h3k27m_export_net
from tests.helpers import ONE_CHANNEL_H3K27M, copy_bundle, write_tiny_cohort

REPO = Path(__file__).resolve().parents[2]
TINY = {"base_width": 8, "spatial_size": 64, "sw_batch_size": 8, **ONE_CHANNEL_H3K27M}
TEMPERATURE, THRESHOLD = 2.0, 0.45
RESAMPLES = 200  # bootstrap draws of the report's CIs (the default 2000 only costs time here)

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def status_bundle(tmp_path_factory) -> Path:
    """The H3K27M bundle's configs with a tiny random network as models/model.pt, temperature 2, threshold 0.45."""
    torch.set_num_threads(1)
    root = copy_bundle(REPO / "bundles" / "h3k27m_classification", tmp_path_factory.mktemp("b") / "status",
                       model_file="$@bundle_root + '/models/model.pt'", temperature=TEMPERATURE, threshold=THRESHOLD,
                       **TINY)
    torch.manual_seed(0)
    net = build_h3k27m_export_net("full", base_width=8, img_size=64)
    torch.save(net.state_dict(), root / "models" / "model.pt")
    return root


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """Eight tiny patients (statuses alternate, two centers) as a synthetic cohort with a status ceiling."""
    root = tmp_path_factory.mktemp("cohort")
    manifest = write_tiny_cohort(root, n_patients=8)
    (root / "parameters").mkdir()
    for i, pid in enumerate(pd.read_csv(manifest).patient_id):
        (root / "parameters" / f"{pid}.json").write_text(json.dumps({"h3k27m_probability": 0.1 + 0.1 * i}))
    (root / "synth.json").write_text(json.dumps({"h3k27m_ceiling": {"status_signal": 1.0}}))
    return manifest


def _status(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(["status", *args, "--runtime", "torch", "--device", "cpu", "--resamples", str(RESAMPLES)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _expected_patient(bundle: Path, image: Path):
    """The patient rule of pipeline.inference.status, run by hand on the bundle's network."""
    from pipeline.inference.status import predict_patient_status
    from transforms import build_transforms

    net = build_h3k27m_export_net("full", base_width=8, img_size=64).eval()
    net.load_state_dict(torch.load(bundle / "models" / "model.pt", weights_only=True))
    data = build_transforms("infer", spatial_size=64)({"image": str(image)})
    return predict_patient_status(net, data["image"], 8, 20)


def test_manifest_cohort_predictions_masks_and_report(status_bundle, cohort, tmp_path, capsys):
    out = tmp_path / "pred"
    code, printed, err = _status(["--bundle", str(status_bundle), "--cohort", str(cohort), "--out", str(out)], capsys)
    assert code == 0, err
    table = pd.read_csv(out / "predictions.csv")
    manifest = pd.read_csv(cohort)
    assert list(table.columns[:5]) == ["patient_id", "center", "probability_altered", "predicted_status", "slices_used"]
    assert list(table.patient_id) == list(manifest.patient_id) and list(table.h3k27m) == list(manifest.h3k27m)
    assert (table.status == "done").all() and (table.slices_used > 0).all()
    # the bundle's temperature and threshold are applied to the patient logit
    np.testing.assert_allclose(table.probability_altered, expit(table.logit_uncalibrated / TEMPERATURE), rtol=1e-9)
    assert ((table.probability_altered >= THRESHOLD) == (table.predicted_status == "altered")).all()
    first = _expected_patient(status_bundle, cohort.parent / manifest.t2[0])
    assert table.logit_uncalibrated[0] == pytest.approx(first.logit, abs=1e-5)
    assert table.slices_used[0] == len(first.slices_used)
    for row in manifest.itertuples():  # masks on each input's own grid
        image = nib.load(cohort.parent / row.t2)
        mask = nib.load(out / f"{row.patient_id}_t2_seg.nii.gz")
        assert mask.shape == image.shape
        np.testing.assert_allclose(mask.affine, image.affine, atol=1e-4)
        assert set(np.unique(np.asanyarray(mask.dataobj))) <= {0, 1}

    report = out / "report"
    metrics = pd.read_csv(report / "metrics.csv")
    assert set(metrics.fold) == {"center_a", "center_b", "pooled"}  # per center and pooled
    pooled_auroc = metrics[(metrics.fold == "pooled") & (metrics.metric == "auroc")].iloc[0]
    from evaluation.classification import roc_auc

    assert pooled_auroc.value == pytest.approx(roc_auc(table.h3k27m, table.probability_altered))
    assert np.isfinite(pooled_auroc.ci_low) and np.isfinite(pooled_auroc.ci_high)
    calibration = json.loads((report / "calibration.json").read_text())
    assert calibration["ece"] == pytest.approx(expected_calibration_error(table.h3k27m, table.probability_altered))
    ceiling = json.loads((report / "metrics.json").read_text())["ceiling"]
    assert ceiling["n_patients"] == 8 and ceiling["scope"] == "evaluated patients"
    for name in ("report.html", "roc.png", "pr.png", "tsne.png", "calibration.png"):
        assert (report / name).stat().st_size > 0
    assert "t2: 8 predicted, 0 skipped of 8 patients" in printed
    assert f"temperature {TEMPERATURE:g}, threshold {THRESHOLD:g}" in printed
    assert f"AUROC {pooled_auroc.value:.3f} [{pooled_auroc.ci_low:.3f}, {pooled_auroc.ci_high:.3f}]" in printed
    assert f"ceiling (Bayes-optimal" in printed and f"AUROC {ceiling['bayes_auroc']:.3f}" in printed
    assert f"(ECE, 10 bins) {calibration['ece']:.3f}" in printed
    assert f"report: {report / 'report.html'}" in printed


def test_an_unreadable_image_is_skipped_and_named_in_one_line(status_bundle, tmp_path, capsys):
    root = tmp_path / "broken"
    manifest = write_tiny_cohort(root, n_patients=4)
    (root / "images" / "tiny_01_t2.nii.gz").write_bytes(b"not a nifti")  # header unreadable: found by the check
    good = nib.load(root / "images" / "tiny_02_t2.nii.gz")  # header fine, data truncated: found when read
    data = (root / "images" / "tiny_02_t2.nii.gz").read_bytes()
    (root / "images" / "tiny_02_t2.nii.gz").write_bytes(data[: len(data) // 2])
    assert good.shape
    out = tmp_path / "pred"
    code, printed, err = _status(["--bundle", str(status_bundle), "--cohort", str(manifest), "--out", str(out)], capsys)
    assert code == 0, err
    table = pd.read_csv(out / "predictions.csv")
    assert list(table.status == "done") == [True, False, False, True]
    skipped = [line for line in printed.splitlines() if line.startswith("  SKIPPED")]
    assert len(skipped) == 2
    assert skipped[0].startswith("  SKIPPED patient 'tiny_01': ") and "tiny_01_t2.nii.gz" in skipped[0]
    assert skipped[1].startswith("  SKIPPED patient 'tiny_02': ") and "tiny_02_t2.nii.gz" in skipped[1]
    assert "t2: 2 predicted, 2 skipped of 4 patients" in printed
    assert "Traceback" not in printed + err
    assert not (out / "tiny_01_t2_seg.nii.gz").exists() and (out / "tiny_03_t2_seg.nii.gz").exists()


def test_datalist_cohort(status_bundle, cohort, tmp_path, capsys):
    manifest = pd.read_csv(cohort)
    items = [{"image": str(cohort.parent / row.t2), "patient_id": row.patient_id, "center": row.center,
              "h3k27m": int(row.h3k27m)} for row in manifest.itertuples()]
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"modality": {"0": "T2"}, "training": items}))
    out = tmp_path / "pred"
    code, printed, err = _status(["--bundle", str(status_bundle), "--cohort", str(datalist), "--out", str(out),
                                  "--no-report"], capsys)
    assert code == 0, err
    table = pd.read_csv(out / "predictions.csv")
    assert list(table.patient_id) == list(manifest.patient_id)
    by_manifest = _expected_patient(status_bundle, cohort.parent / manifest.t2[3])
    assert table.logit_uncalibrated[3] == pytest.approx(by_manifest.logit, abs=1e-5)
    assert not (out / "report").exists()


def test_brats_folder_cohort_without_statuses(status_bundle, cohort, tmp_path, capsys):
    brats = tmp_path / "brats"
    for i, image in enumerate(sorted((cohort.parent / "images").glob("*_t2.nii.gz"))[:2]):
        pid = f"BraTS2021_{i:05d}"
        (brats / pid).mkdir(parents=True)
        shutil.copy(image, brats / pid / f"{pid}_t2.nii.gz")
    out = tmp_path / "pred"
    code, printed, err = _status(["--bundle", str(status_bundle), "--cohort", str(brats), "--out", str(out),
                                  "--sequence", "t2"], capsys)
    assert code == 0, err
    table = pd.read_csv(out / "predictions.csv")
    assert list(table.patient_id) == ["BraTS2021_00000", "BraTS2021_00001"] and (table.status == "done").all()
    assert table.h3k27m.isna().all()
    assert (out / "BraTS2021_00001_t2_seg.nii.gz").is_file()
    assert "no patient with a known H3K27M status was predicted: no report" in printed


def test_onnx_runtime_gives_the_pytorch_predictions(status_bundle, cohort, tmp_path, capsys):
    import warnings

    import onnx

    from pipeline.inference.onnx_export import source_metadata

    bundle = tmp_path / "bundle"
    shutil.copytree(status_bundle, bundle)
    net = build_h3k27m_export_net("full", base_width=8, img_size=64).eval()
    net.load_state_dict(torch.load(bundle / "models" / "model.pt", weights_only=True))
    onnx_file = bundle / "models" / "model.onnx"
    with warnings.catch_warnings():  # the TorchScript-based exporter: 10x faster than the dynamo one for a test
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(2, 1, 64, 64),), str(onnx_file), input_names=["image"],
                          output_names=["logits"], dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=18, dynamo=False)
    proto = onnx.load(str(onnx_file))
    for key, value in source_metadata(bundle / "models" / "model.pt", {}, 64).items():  # current: same weights
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(onnx_file))
    torch_out, onnx_out = tmp_path / "torch", tmp_path / "onnx"
    assert _status(["--bundle", str(bundle), "--cohort", str(cohort), "--out", str(torch_out), "--no-report"],
                   capsys)[0] == 0
    assert main(["status", "--bundle", str(bundle), "--cohort", str(cohort), "--out", str(onnx_out), "--no-report",
                 "--runtime", "onnx", "--device", "cpu"]) == 0
    a, b = pd.read_csv(torch_out / "predictions.csv"), pd.read_csv(onnx_out / "predictions.csv")
    np.testing.assert_allclose(a.logit_uncalibrated, b.logit_uncalibrated, atol=1e-3)
    assert list(a.slices_used) == list(b.slices_used)


def test_a_refused_bundle_stops_before_anything_is_written(status_bundle, cohort, tmp_path, capsys):
    bundle = tmp_path / "evil"
    shutil.copytree(status_bundle, bundle)
    config = json.loads((bundle / "configs" / "inference.json").read_text())
    config["threshold"] = "$__import__('os').system('touch PWNED') * 0 + 0.5"
    (bundle / "configs" / "inference.json").write_text(json.dumps(config, indent=4))
    out = tmp_path / "pred"
    code, printed, err = _status(["--bundle", str(bundle), "--cohort", str(cohort), "--out", str(out)], capsys)
    assert code == 2
    assert err.startswith("dmg status: error: refusing bundle") and "threshold" in err and len(err.splitlines()) == 1
    assert not out.exists() and not Path("PWNED").exists()


def test_a_bundle_without_weights_is_one_line(cohort, tmp_path, capsys):
    bundle = copy_bundle(REPO / "bundles" / "h3k27m_classification", tmp_path / "empty",
                         model_file="$@bundle_root + '/models/model.pt'")
    code, printed, err = _status(["--bundle", str(bundle), "--cohort", str(cohort), "--out", str(tmp_path / "p")],
                                 capsys)
    assert code == 2 and "has no trained H3K27M weights" in err and len(err.splitlines()) == 1


def test_demo_status_part_prints_metrics_beside_the_ceiling(status_bundle, tmp_path, capsys, monkeypatch):
    from argparse import Namespace

    import pipeline.data.synthetic
    from pipeline.commands.demo import STATUS_STYLE, _load_status_model, _status_part

    made = {}

    def tiny_generator(out_dir, n_patients, centers, seed, workers, style):  # the synthetic heads take minutes
        made.update(n_patients=n_patients, style=style, centers=list(centers))
        root = Path(out_dir)
        manifest = write_tiny_cohort(root, n_patients=n_patients, seed=seed)
        (root / "parameters").mkdir()
        for i, pid in enumerate(pd.read_csv(manifest).patient_id):
            (root / "parameters" / f"{pid}.json").write_text(json.dumps({"h3k27m_probability": 0.2 + 0.2 * i}))
        (root / "synth.json").write_text(json.dumps({"h3k27m_ceiling": {"status_signal": 1.0}}))
        return manifest

    monkeypatch.setattr(pipeline.data.synthetic, "generate_cohort", tiny_generator)
    args = Namespace(status_bundle=str(status_bundle), status_patients=4, device="cpu", trust_bundle=False,
                     center="center_c", seed=7, workers=1)
    model, skipped = _load_status_model(args)
    assert skipped is None and model.temperature == TEMPERATURE
    _status_part(args, model, tmp_path, resamples=RESAMPLES)
    printed = capsys.readouterr().out
    assert made == {"n_patients": 4, "style": STATUS_STYLE, "centers": ["center_c"]}
    table = pd.read_csv(tmp_path / "status" / "predictions.csv")
    assert len(table) == 4 and (table.status == "done").all()
    metrics = pd.read_csv(tmp_path / "status" / "report" / "metrics.csv")
    accuracy = metrics[(metrics.fold == "pooled") & (metrics.metric == "accuracy")].iloc[0]
    ceiling = json.loads((tmp_path / "status" / "report" / "metrics.json").read_text())["ceiling"]
    assert "H3K27M status of 4 synthetic heldout-style patients" in printed
    assert f"Accuracy {accuracy.value:.3f}" in printed and "AUROC" in printed
    assert f"ceiling (Bayes-optimal" in printed and f"AUROC {ceiling['bayes_auroc']:.3f}" in printed
    assert "(ECE, 10 bins)" in printed


def test_demo_skips_the_status_part_of_a_bundle_without_weights(tmp_path):
    from argparse import Namespace

    from pipeline.commands.demo import _load_status_model

    bundle = copy_bundle(REPO / "bundles" / "h3k27m_classification", tmp_path / "empty",
                         model_file="$@bundle_root + '/models/model.pt'")
    model, skipped = _load_status_model(Namespace(status_bundle=str(bundle), status_patients=4, device="cpu",
                                                  trust_bundle=False))
    assert model is None and "has no trained H3K27M weights" in skipped and "model.pt" in skipped


def test_set_overrides_the_bundle_config_and_refuses_reserved_keys(status_bundle, cohort, tmp_path, capsys):
    out = tmp_path / "pred"
    code, printed, err = _status(["--bundle", str(status_bundle), "--cohort", str(cohort), "--out", str(out),
                                  "--no-report", "--set", "threshold=1.0", "temperature=1"], capsys)
    assert code == 0, err
    table = pd.read_csv(out / "predictions.csv")
    assert (table.predicted_status == "wild-type").all()  # no probability reaches 1
    np.testing.assert_allclose(table.probability_altered, expit(table.logit_uncalibrated), rtol=1e-9)
    code, printed, err = _status(["--bundle", str(status_bundle), "--cohort", str(cohort), "--out", str(out),
                                  "--set", "model_file=x.pt"], capsys)
    assert code == 2 and "set 'model_file' with --model" in err and len(err.splitlines()) == 1
