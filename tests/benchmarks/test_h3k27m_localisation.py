"""benchmarks.h3k27m_localisation: the status read from the net's own lesion slices and from the reference's."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from benchmarks.h3k27m_localisation import localisation_summary, main, patient_localisation
from tests.helpers import ONE_CHANNEL_H3K27M, copy_bundle

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "h3k27m_classification"


class BrightSpotNet(nn.Module):
    """Mask: every pixel above 0.6. Status logit of a slice: 10 x (its brightest pixel - 0.85)."""

    def forward(self, x):
        altered = 10 * (x.amax((1, 2, 3)) - 0.85)
        return {"class_logits": torch.stack([torch.zeros_like(altered), altered], 1),
                "mask_logits": 50 * (x[:, :1] - 0.6), "features": altered[:, None]}


def test_own_and_reference_slices_are_read_with_the_same_rule():
    image = torch.full((1, 16, 16, 10), 0.3)
    image[0, 4:8, 4:8, 6:9] = 0.9  # the lesion, in the reference: slices 6-8
    image[0, 10:14, 10:14, 1:3] = 0.8  # a decoy the net's mask also takes: slices 1-2
    label = torch.zeros(1, 16, 16, 10)
    label[0, 4:8, 4:8, 6:9] = 1
    row = patient_localisation(BrightSpotNet(), {"image": image, "label": label, "h3k27m": 1}, min_tumour_pixels=10)
    lesion, decoy = 1 / (1 + np.exp(-0.5)), 1 / (1 + np.exp(0.5))
    assert row["probability_own_slices"] == pytest.approx((3 * lesion + 2 * decoy) / 5)
    assert row["probability_reference_slices"] == pytest.approx(lesion)
    assert (row["slices_own"], row["slices_reference"]) == (5, 3)
    assert row["height_own"] == pytest.approx((1 + 2 + 6 + 7 + 8) / 5 / 9)
    assert row["height_reference"] == pytest.approx(7 / 9)
    assert row["dice"] == pytest.approx(2 * 48 / (48 + 32 + 48))


def test_summary_separates_finding_from_reading():
    table = pd.DataFrame({
        "status": [1, 1, 1, 0, 0, 0],
        "probability_own_slices": [0.5, 0.2, 0.6, 0.55, 0.3, 0.4],
        "probability_reference_slices": [0.9, 0.8, 0.7, 0.1, 0.2, 0.3],
        "dice": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        "slices_own": [20, 20, 20, 20, 20, 20], "slices_reference": [5, 5, 5, 5, 5, 5],
        "height_own": [0.5, 0.4, 0.6, 0.5, 0.45, 0.55],
        "height_reference": [0.2, 0.3, 0.4, 0.5, 0.6, 0.7],
    })
    s = localisation_summary(table)
    assert s["status AUROC, the reference lesion's slices (oracle localiser)"] == 1.0
    assert s["status AUROC, the net's own lesion slices (shipped rule)"] == pytest.approx(5 / 9)
    assert s["AUROC of the reference lesion's height alone (1 - height)"] == 1.0
    assert s["mask Dice, median"] == pytest.approx(0.35)
    assert s["lesion height, own vs reference: Pearson r"] == pytest.approx(
        np.corrcoef(table["height_own"], table["height_reference"])[0, 1])


def test_command_on_fold_models(tiny_cohort, tmp_path, capsys):
    from pipeline.networks import build_h3k27m_net

    paths = []
    for fold in range(2):
        torch.manual_seed(fold)
        paths += ["--model", str(tmp_path / f"fold{fold}.pt")]
        torch.save(build_h3k27m_net("full", base_width=8, img_size=32).state_dict(), paths[-1])
    main([str(tiny_cohort), *paths, "--n-folds", "2", "--base-width", "8", "--spatial-size", "32",
          "--out", str(tmp_path / "table.md")])
    text = (tmp_path / "table.md").read_text()
    assert capsys.readouterr().out == text + "\n"
    assert "6 patients (3 altered), t2, 32 px, central crop 1, 2 model(s)" in text
    assert "| status AUROC, the reference lesion's slices (oracle localiser) | " in text
    with pytest.raises(SystemExit) as stop:
        main([str(tiny_cohort), *paths, "--n-folds", "3", "--base-width", "8", "--spatial-size", "32"])
    assert stop.value.code == 2 and "--n-folds 3 needs one model per fold, got 2" in capsys.readouterr().err


def test_command_on_a_bundle_reads_its_network_and_input_settings(tiny_cohort, tmp_path, capsys):
    from pipeline.networks import build_h3k27m_export_net

    root = copy_bundle(BUNDLE, tmp_path / "bundle", base_width=8, spatial_size=32, **ONE_CHANNEL_H3K27M)
    torch.manual_seed(0)
    torch.save(build_h3k27m_export_net("full", base_width=8, img_size=32).state_dict(), root / "models" / "model_t2.pt")
    main([str(tiny_cohort), "--bundle", str(root), "--out", str(tmp_path / "bundle.md")])
    main([str(tiny_cohort), "--model", str(root / "models" / "model_t2.pt"), "--base-width", "8", "--spatial-size",
          "32", "--out", str(tmp_path / "model.md")])
    capsys.readouterr()
    bundle_text, model_text = (tmp_path / "bundle.md").read_text(), (tmp_path / "model.md").read_text()
    assert f"6 patients (3 altered), t2, 32 px, central crop 1, bundle {root}" in bundle_text
    # the bundle's export network reads exactly as the training network with the same weights
    assert bundle_text.splitlines()[1:] == model_text.splitlines()[1:]
    with pytest.raises(SystemExit) as stop:
        main([str(tiny_cohort), "--bundle", str(tmp_path / "missing")])
    assert stop.value.code == 2 and "does not exist" in capsys.readouterr().err
