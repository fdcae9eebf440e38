"""Calibration of H3K27M probabilities: temperature scaling, expected calibration error, threshold choice, and the
``python -m pipeline.inference.calibrate`` path that fills a bundle's temperature and threshold."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit
from sklearn.calibration import calibration_curve

from evaluation.calibration import (
    apply_temperature,
    binary_nll,
    expected_calibration_error,
    fit_calibration,
    fit_temperature,
    plot_reliability,
    reliability_table,
    youden_threshold,
)


def _simulated(n: int, temperature: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Statuses drawn from sigmoid(z) and the logits a model with ``temperature`` would report (z * T)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, n)
    statuses = (rng.random(n) < expit(z)).astype(int)
    return statuses, z * temperature


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5])
def test_fit_temperature_recovers_the_temperature_of_simulated_logits(true_temperature):
    statuses, logits = _simulated(20000, true_temperature)
    fitted = fit_temperature(statuses, logits)
    assert fitted == pytest.approx(true_temperature, rel=0.06)
    # the fitted temperature is the NLL minimum: a little either way is worse
    assert binary_nll(statuses, logits, fitted) < binary_nll(statuses, logits, fitted * 1.1)
    assert binary_nll(statuses, logits, fitted) < binary_nll(statuses, logits, fitted / 1.1)


def test_apply_temperature_is_the_sigmoid_of_the_scaled_logit():
    np.testing.assert_allclose(apply_temperature([-2.0, 0.0, 3.0], 2.0), expit(np.array([-1.0, 0.0, 1.5])))
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature([1.0], 0.0)
    with pytest.raises(ValueError, match="altered and wild-type"):
        fit_temperature([1, 1, 1], [0.1, 0.2, 0.3])


def test_ece_by_hand_and_reliability_bins_match_scikit_learn():
    labels, probabilities = [0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]
    # one patient per bin: (|0.1 - 0| + |0.2 - 0| + |0.8 - 1| + |0.9 - 1|) / 4
    assert expected_calibration_error(labels, probabilities) == pytest.approx(0.15)
    rng = np.random.default_rng(3)
    p = rng.random(500)
    y = (rng.random(500) < p ** 2).astype(int)
    table = reliability_table(y, p, bins=10)
    used = table[table.n > 0]
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    np.testing.assert_allclose(used.fraction_altered, prob_true)
    np.testing.assert_allclose(used.mean_probability, prob_pred)
    assert table.n.sum() == 500


def test_ece_is_small_when_calibrated_and_large_when_not():
    rng = np.random.default_rng(1)
    p = rng.random(20000)
    statuses = (rng.random(20000) < p).astype(int)
    assert expected_calibration_error(statuses, p) < 0.02
    overconfident = expit(3.0 * logit(np.clip(p, 1e-9, 1 - 1e-9)))
    assert expected_calibration_error(statuses, overconfident) > 0.1
    underconfident = 0.5 + (p - 0.5) * 0.3
    assert expected_calibration_error(statuses, underconfident) > 0.1


def test_youden_threshold_separates_validation_patients_and_sits_between_them():
    wild, altered = [0.80, 0.82, 0.85], [0.90, 0.93]  # a model that calls everyone likely altered
    labels = [0] * len(wild) + [1] * len(altered)
    threshold = youden_threshold(labels, wild + altered)
    assert threshold == pytest.approx((0.85 + 0.90) / 2)  # halfway between the last wild-type and the first altered
    assert youden_threshold([0, 1, 0, 1], [0.1, 0.6, 0.3, 0.7]) == pytest.approx(0.45)
    # overlapping scores: cuts at 0.2 and at 0.3 both reach J = 0.75; the tie goes to the one nearer 0.5
    labels = [0, 0, 0, 1, 0, 1, 1, 1]
    probs = [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4]
    threshold = youden_threshold(labels, probs)
    predicted = np.asarray(probs) >= threshold
    y = np.asarray(labels)
    j = predicted[y == 1].mean() - predicted[y == 0].mean()
    assert j == pytest.approx(0.75) and threshold == pytest.approx((0.3 + 0.25) / 2)


def test_fit_calibration_lowers_the_error_of_an_overconfident_model():
    statuses, logits = _simulated(4000, 3.0, seed=2)
    record = fit_calibration(statuses, logits)
    assert record["temperature"] == pytest.approx(3.0, rel=0.1)
    assert record["ece_after"] < 0.03 < 0.1 < record["ece_before"]
    assert record["nll_after"] < record["nll_before"]
    assert 0.0 < record["threshold"] < 1.0 and "Youden" in record["threshold_rule"]
    json.dumps(record)  # plain JSON


def test_reliability_plot_is_a_png():
    png = plot_reliability([0, 1, 1, 0], [0.2, 0.7, 0.9, 0.4])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def _predictions_csv(path: Path, statuses: np.ndarray, logits: np.ndarray) -> Path:
    table = pd.DataFrame({"patient_id": [f"p{i}" for i in range(len(statuses))], "center": "a",
                          "probability_altered": expit(logits), "logit_uncalibrated": logits, "h3k27m": statuses,
                          "status": "done"})
    table.loc[len(table)] = {"patient_id": "broken", "center": "a", "probability_altered": np.nan,
                             "logit_uncalibrated": np.nan, "h3k27m": 1, "status": "skipped: x: unreadable"}
    table.to_csv(path, index=False)
    return path


def test_calibrate_cli_fits_from_predictions_and_fills_the_bundle(tmp_path, capsys):
    from pipeline.inference.calibrate import main

    statuses, logits = _simulated(600, 2.0, seed=5)
    predictions = _predictions_csv(tmp_path / "predictions.csv", statuses, logits)
    bundle = tmp_path / "bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "configs" / "inference.json").write_text(json.dumps({"threshold": 0.5, "temperature": 1.0,
                                                                  "network_def": "$x", "sequence": "t2"}))
    out = tmp_path / "calibration.json"
    assert main(["--predictions", str(predictions), "--out", str(out), "--bundle", str(bundle)]) == 0
    record = json.loads(out.read_text())
    assert record["n_patients"] == 600 and record["n_left_out"] == 1
    assert record["temperature"] == pytest.approx(fit_temperature(statuses, logits))
    config = json.loads((bundle / "configs" / "inference.json").read_text())
    assert config == {"threshold": record["threshold"], "temperature": record["temperature"], "network_def": "$x",
                      "sequence": "t2"}
    printed = capsys.readouterr().out
    assert f"temperature {record['temperature']:.3f}" in printed and "ECE" in printed


def test_calibrate_cli_names_a_missing_column_in_one_line(tmp_path, capsys):
    from pipeline.inference.calibrate import main

    path = tmp_path / "old.csv"
    pd.DataFrame({"patient_id": ["a"], "probability_altered": [0.3]}).to_csv(path, index=False)
    assert main(["--predictions", str(path), "--out", str(tmp_path / "c.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "logit_uncalibrated" in err and str(path) in err
    assert not (tmp_path / "c.json").exists()
