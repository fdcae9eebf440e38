"""benchmarks.h3k27m_image_features: features read inside the lesion, an AUROC that follows a visible cue."""

import numpy as np

from benchmarks.h3k27m_image_features import cohort_image_features, image_feature_aurocs, lesion_features


def _patient(rng, altered: int) -> tuple[np.ndarray, np.ndarray]:
    image = np.zeros((2, 24, 24, 12), dtype=np.float32)
    image[:, 4:20, 4:20, 1:11] = 0.4 + 0.02 * rng.normal(size=(2, 16, 16, 10))
    lesion = np.zeros((24, 24, 12), dtype=bool)
    lesion[9:14, 9:14, 4:8] = True
    image[1][lesion] += 0.5 * (1 - altered) + 0.3 * rng.normal()  # wild-type enhances on the second channel
    return image, lesion


def test_features_are_read_inside_the_lesion():
    image, lesion = _patient(np.random.default_rng(0), altered=0)
    image[1][lesion] = 0.9
    f = lesion_features(image, lesion, ("t2", "t1c"))
    assert abs(f["t1c_mean_rel"] - (0.9 - np.median(image[1][(image[0] > 0.05) & ~lesion]))) < 1e-6
    assert f["t1c_sd"] < 1e-6 and abs(f["log_volume"] - np.log(lesion.sum())) < 1e-9
    assert 0.0 < f["height_in_head"] < 1.0


def test_auroc_follows_the_visible_cue_and_not_noise():
    rng = np.random.default_rng(1)
    statuses = np.array([i % 2 for i in range(120)])
    features = [lesion_features(*_patient(rng, s), ("t2", "t1c")) for s in statuses]
    result = image_feature_aurocs(features, statuses)
    assert result["all features (cross-validated logistic)"] > 0.75
    assert result["t1c_mean_rel"] < 0.25  # brighter when wild-type: a low AUROC for "altered"
    assert abs(result["t2_mean_rel"] - 0.5) < 0.15


def test_runs_on_a_cohort(tiny_cohort):
    features, statuses = cohort_image_features(tiny_cohort, spatial_size=32)
    assert len(features) == len(statuses) == 6 and set(statuses) == {0, 1}
    assert {"t2_mean_rel", "t2_p95_rel", "t2_sd", "height_in_head", "log_volume"} == set(features[0])


def test_command_writes_the_table(tiny_cohort, tmp_path, capsys):
    from benchmarks.h3k27m_image_features import main

    main([str(tiny_cohort), "--spatial-size", "32", "--out", str(tmp_path / "table.md")])
    text = (tmp_path / "table.md").read_text()
    assert capsys.readouterr().out == text + "\n"  # printed and written: the same table
    assert "6 patients (3 altered), t2, 32 px" in text and "| all features (cross-validated logistic) | " in text


def test_one_line_when_a_status_has_too_few_patients(tmp_path, capsys):
    import pandas as pd
    import pytest

    from benchmarks.h3k27m_image_features import main
    from tests.helpers import write_tiny_cohort

    manifest = write_tiny_cohort(tmp_path, n_patients=3)  # statuses 0, 1, 0: one altered patient
    with pytest.raises(SystemExit) as stop:
        main([str(manifest), "--spatial-size", "32"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "needs at least 2 patients of each status" in err and str(manifest) in err and "Traceback" not in err
    assert pd.read_csv(manifest).h3k27m.sum() == 1
