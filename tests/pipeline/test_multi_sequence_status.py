"""An H3K27M model that reads several sequences (T2 + T1C as input channels) of the central part of the head:
the transforms resample the extra sequence onto the image's grid through the affines and invert back to it,
the data lists pair a patient's sequences (and leave out a patient lacking one), a one-channel pretrained
encoder loads into the multi-channel net, and ``dmg status`` / the bundle's own ``inference.json`` run it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.cli import main
from pipeline.data.datalists import cohort_datalist, status_datalists
from pipeline.engines.masked_pretraining import encoder_state_dict, load_pretrained_encoder
from pipeline.networks import build_h3k27m_export_net, build_h3k27m_net
from tests.helpers import ONE_NET_H3K27M, copy_bundle, write_tiny_cohort
from transforms import build_postprocessing, build_transforms
from transforms.crop import InPlaneForegroundCrop

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "h3k27m_classification"

pytestmark = pytest.mark.usefixtures("single_thread")


def _add_t1c(manifest: Path, leave_out: str | None = None) -> Path:
    """Give every patient a T1C: its T2 at half the in-plane resolution (same world extent, affine scaled),
    as a second acquisition on its own grid; ``leave_out`` gets none."""
    rows = pd.read_csv(manifest)
    t1c = []
    for row in rows.itertuples():
        if row.patient_id == leave_out:
            t1c.append("")
            continue
        t2 = nib.load(manifest.parent / row.t2)
        data = np.asarray(t2.dataobj, dtype=np.float32)[::2, ::2] * 0.5 + 10  # another contrast scale
        affine = t2.affine @ np.diag([2.0, 2.0, 1.0, 1.0])
        name = f"images/{row.patient_id}_t1c.nii.gz"
        nib.save(nib.Nifti1Image(data, affine), str(manifest.parent / name))
        t1c.append(name)
    rows["t1c"] = t1c
    rows.to_csv(manifest, index=False)
    return manifest


@pytest.fixture(scope="module")
def two_sequence_cohort(tmp_path_factory) -> Path:
    return _add_t1c(write_tiny_cohort(tmp_path_factory.mktemp("two_seq"), n_patients=6), leave_out="tiny_05")


def test_extra_sequence_becomes_a_resampled_channel(two_sequence_cohort: Path):
    item = cohort_datalist(two_sequence_cohort, "t2", require_label=True, extra_sequences=["t1c"])[0]
    assert item["t1c"].endswith("tiny_00_t1c.nii.gz")
    data = build_transforms("validate", spatial_size=32, extra_image_keys=("t1c",))(item)
    image, label = torch.as_tensor(data["image"]), torch.as_tensor(data["label"])
    assert image.shape[0] == 2 and label.shape[0] == 1 and image.shape[1:] == label.shape[1:]
    # the T1C channel shows the same anatomy at the same place (it was resampled through the affines)
    corr = np.corrcoef(image[0].flatten().numpy(), image[1].flatten().numpy())[0, 1]
    assert corr > 0.9
    assert "t1c" not in data
    one_channel = build_transforms("validate", spatial_size=32)(item)
    assert torch.equal(torch.as_tensor(one_channel["image"])[0], image[0])  # channel 0 is the T2 as before


def test_central_crop_keeps_the_middle_and_inverts_to_the_input_grid(tiny_cohort: Path):
    image_file = str(tiny_cohort.parent / "images" / "tiny_00_t2.nii.gz")
    whole = build_transforms("infer", spatial_size=32)({"image": image_file})
    preprocessing = build_transforms("infer", spatial_size=32, center_crop_fraction=0.5)
    data = preprocessing({"image": image_file})
    assert data["image"].shape == whole["image"].shape
    pred = torch.ones_like(torch.as_tensor(data["image"]))
    mask = np.asarray(build_postprocessing(preprocessing, threshold=0.5)({**data, "pred": pred})["pred"][0])
    assert mask.shape == nib.load(image_file).shape
    rows, cols = np.flatnonzero(mask.any((1, 2))), np.flatnonzero(mask.any((0, 2)))
    stored = torch.as_tensor(np.asarray(nib.load(image_file).dataobj))[None]
    (r0, c0), (r1, c1) = InPlaneForegroundCrop().compute_box(stored)
    # the model saw the central half of the head box (tiny_00 is stored RAS), nothing outside it
    assert abs(len(rows) - 0.5 * (r1 - r0)) <= 1 and abs(len(cols) - 0.5 * (c1 - c0)) <= 1
    assert rows[0] > r0 and rows[-1] < r1 - 1 and cols[0] > c0 and cols[-1] < c1 - 1
    with pytest.raises(ValueError, match="center_crop_fraction"):
        build_transforms("infer", center_crop_fraction=0.0)


def test_status_lists_pair_sequences_and_leave_out_a_patient_without_one(two_sequence_cohort: Path):
    lists = status_datalists(two_sequence_cohort, "t2", fold=0, n_folds=2, extra_sequences=["t1c"])
    patients = [d["patient_id"] for d in lists["train"] + lists["validate"]]
    assert "tiny_05" not in patients and len(patients) == 5
    assert all(d["t1c"].endswith(f"{d['patient_id']}_t1c.nii.gz") for d in lists["train"] + lists["validate"])
    plain = status_datalists(two_sequence_cohort, "t2", fold=0, n_folds=2)
    assert len(plain["train"] + plain["validate"]) == 6 and "t1c" not in plain["train"][0]


def test_one_channel_pretrained_encoder_loads_into_a_two_channel_net():
    torch.manual_seed(0)
    one = build_h3k27m_net("full", base_width=8, img_size=64).eval()
    two = build_h3k27m_net("full", base_width=8, img_size=64, in_channels=2).eval()
    report = load_pretrained_encoder(two, encoder_state_dict(one))
    assert report.inflated == ["resnet.conv1.weight"] and "inflated from 1 to 2" in report.summary()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():  # the same image in both channels: the pretrained encoder's features exactly
        torch.testing.assert_close(two.encoder(torch.cat([x, x], 1))["stage3"], one.encoder(x)["stage3"],
                                   atol=1e-4, rtol=1e-4)
    bigger = build_h3k27m_net("full", base_width=8, img_size=96)  # pretrained at 64 px: position grid resized
    load_pretrained_encoder(bigger, encoder_state_dict(one))
    assert bigger.encoder.transformer2.pos_embed.shape[-1] == 96 // 8
    wider = build_h3k27m_net("full", base_width=16, img_size=64)
    with pytest.raises(ValueError, match="shape mismatches"):
        load_pretrained_encoder(wider, encoder_state_dict(one))


@pytest.fixture(scope="module")
def two_sequence_bundle(tmp_path_factory) -> Path:
    root = copy_bundle(BUNDLE, tmp_path_factory.mktemp("b") / "two_seq",
                       model_file="$@bundle_root + '/models/model.pt'", base_width=8, spatial_size=64,
                       sw_batch_size=8, extra_sequences=["t1c"], center_crop_fraction=0.5, lesion_pooling=False,
                       **ONE_NET_H3K27M)
    torch.manual_seed(0)
    net = build_h3k27m_export_net("full", base_width=8, img_size=64, in_channels=2)
    torch.save(net.state_dict(), root / "models" / "model.pt")
    return root


def test_dmg_status_reads_both_sequences_and_skips_a_patient_without_t1c(two_sequence_bundle: Path,
                                                                          two_sequence_cohort: Path, tmp_path, capsys):
    out = tmp_path / "pred"
    code = main(["status", "--bundle", str(two_sequence_bundle), "--cohort", str(two_sequence_cohort), "--out",
                 str(out), "--runtime", "torch", "--device", "cpu", "--resamples", "50"])
    assert code == 0, capsys.readouterr().err
    table = pd.read_csv(out / "predictions.csv").set_index("patient_id")
    assert table.loc["tiny_05", "status"].startswith("skipped") and "t1c" in table.loc["tiny_05", "status"]
    done = table[table.status == "done"]
    assert len(done) == 5 and done.probability_altered.between(0, 1).all()
    for pid, row in done.iterrows():  # masks on the T2 grid, not on the T1C's
        t2 = nib.load(two_sequence_cohort.parent / "images" / f"{pid}_t2.nii.gz")
        mask = nib.load(out / row["mask"])
        assert mask.shape == t2.shape and np.allclose(mask.affine, t2.affine, atol=1e-5)


def test_bundle_config_preprocessing_is_the_package_pipeline_with_two_sequences(two_sequence_bundle: Path,
                                                                                 two_sequence_cohort: Path):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(two_sequence_bundle / "configs" / "inference.json"))
    parser.update({"dataset_dir": str(two_sequence_cohort)})
    item = {k: v for k, v in parser.get_parsed_content("datalist")[1].items()}
    assert set(item) >= {"image", "t1c"}
    from_config = parser.get_parsed_content("preprocessing")(dict(item))["image"]
    from_package = build_transforms("infer", spatial_size=64, center_crop_fraction=0.5,
                                    extra_image_keys=("t1c",))(dict(item))["image"]
    assert from_config.shape[0] == 2 and from_config.shape == from_package.shape
    assert torch.equal(from_config.as_tensor(), from_package.as_tensor())


def test_bundle_config_without_extra_sequences_is_one_channel(tiny_cohort: Path, tmp_path: Path):
    """The default inference.json (no extra sequence, no crop) disables the resample/concat/crop steps."""
    from monai.bundle import ConfigParser

    config = json.loads((BUNDLE / "configs" / "inference.json").read_text())
    config.update(extra_sequences=[], center_crop_fraction=1.0, spatial_size=64)
    shutil.copytree(BUNDLE / "configs", tmp_path / "configs")
    (tmp_path / "configs" / "inference.json").write_text(json.dumps(config))
    parser = ConfigParser()
    parser.read_config(str(tmp_path / "configs" / "inference.json"))
    image = str(tiny_cohort.parent / "images" / "tiny_01_t2.nii.gz")
    from_config = parser.get_parsed_content("preprocessing")({"image": image})["image"]
    assert from_config.shape[0] == 1
    from_package = build_transforms("infer", spatial_size=64)({"image": image})["image"]
    assert torch.equal(from_config.as_tensor(), from_package.as_tensor())
