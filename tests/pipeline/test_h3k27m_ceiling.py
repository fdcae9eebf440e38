"""H3K27M status of randomised synthetic cohorts: the latent logistic model, its Bayes-optimal ceiling
(checked against a brute-force estimate), synth.json and ``dmg synth --status-signal``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from evaluation.classification_ceiling import (CEILING_KEY, bayes_ceiling, ceiling_text, expected_auroc,
                                               read_status_ceiling)
from pipeline.cli import main
from pipeline.data.h3k27m import draw_style_h3k27m, style_status_probability
from pipeline.data.lesion import LesionSpec, sample_style_lesion
from pipeline.data.style import STYLES
from pipeline.data.synthetic import generate_cohort


def _specs(n: int, style: str = "randomised", seed: int = 0) -> list[LesionSpec]:
    st, rng = STYLES[style], np.random.default_rng(seed)
    return [sample_style_lesion(rng, st.edge_mm, st.texture_sd, st.texture_scale_mm) for _ in range(n)]


def test_expected_auroc_matches_a_brute_force_estimate():
    rng = np.random.default_rng(1)
    p = np.round(rng.beta(2, 1.5, size=150), 2)  # rounded: ties are exercised
    draws = []
    for _ in range(3000):
        y = (rng.random(p.size) < p).astype(int)
        if 0 < y.sum() < y.size:
            draws.append(roc_auc_score(y, p))
    assert expected_auroc(p) == pytest.approx(np.mean(draws), abs=0.004)
    assert expected_auroc(np.full(10, 0.3)) == pytest.approx(0.5)  # every pair tied


def test_bayes_ceiling_realised_and_expected():
    p = np.array([0.9, 0.8, 0.3, 0.6, 0.1])
    y = np.array([1, 0, 0, 1, 0])
    c = bayes_ceiling(y, p)
    assert c["bayes_auroc"] == pytest.approx(roc_auc_score(y, p))
    assert c["bayes_accuracy"] == pytest.approx(np.mean((p >= 0.5) == y))  # 0.8: one wild-type at 0.8
    assert c["expected_bayes_accuracy"] == pytest.approx(np.mean([0.9, 0.8, 0.7, 0.6, 0.9]))
    assert bayes_ceiling(np.ones(5, int), p)["bayes_auroc"] is None
    with pytest.raises(ValueError, match="0 or 1"):
        bayes_ceiling([1, 0, 2, 0, 1], p)


def test_phenotype_directions():
    base = _specs(1)[0]
    altered_like = dataclasses.replace(base, site="pons", enhancement="none", necrotic_fraction=0.0, edge_mm=4.0,
                                       texture_sd=0.28)
    wild_like = dataclasses.replace(base, site="thalamus_left", enhancement="ring", necrotic_fraction=0.0,
                                    edge_mm=0.8, texture_sd=0.04)
    assert style_status_probability(altered_like) > 0.95 and style_status_probability(wild_like) < 0.05
    for change in ({"site": "thalamus_right"}, {"enhancement": "patchy"}, {"enhancement": "ring"},
                   {"necrotic_fraction": 0.4}, {"edge_mm": 1.0}, {"texture_sd": 0.05}):
        assert style_status_probability(dataclasses.replace(altered_like, **change)) < \
            style_status_probability(altered_like), change
    assert style_status_probability(wild_like, signal=0.0) == 0.5
    with pytest.raises(ValueError, match="status signal"):
        style_status_probability(base, signal=-1.0)


def test_default_signal_gives_a_ceiling_near_0_90_and_signal_scales_it():
    specs = _specs(3000)
    auroc = {s: expected_auroc([style_status_probability(x, s) for x in specs]) for s in (0.5, 1.0, 2.0)}
    assert 0.87 <= auroc[1.0] <= 0.93
    assert auroc[0.5] < auroc[1.0] < auroc[2.0]
    rng = np.random.default_rng(0)
    drawn = [draw_style_h3k27m(rng, x) for x in specs]
    assert 0.5 < np.mean([d[0] for d in drawn]) < 0.8  # most DMG are altered
    realised = bayes_ceiling([d[0] for d in drawn], [d[1] for d in drawn])["bayes_auroc"]
    assert realised == pytest.approx(auroc[1.0], abs=0.02)


@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ceiling")
    generate_cohort(out, 2, seed=3, style="randomised", skull_stripped=True, workers=1, progress=False,
                    status_signal=1.5)
    return out


def test_synth_json_records_the_cohorts_ceiling(tiny_cohort: Path):
    ceiling = read_status_ceiling(tiny_cohort)
    assert ceiling == json.loads((tiny_cohort / "synth.json").read_text())[CEILING_KEY]
    probs, statuses = [], []
    for pid in ("synth_0000", "synth_0001"):
        params = json.loads((tiny_cohort / "parameters" / f"{pid}.json").read_text())
        spec = LesionSpec(**{k: tuple(map(tuple, v)) if k == "lobes" else (tuple(v) if isinstance(v, list) else v)
                             for k, v in params["lesion"].items()})
        probs.append(style_status_probability(spec, 1.5))
        assert params["h3k27m_probability"] == pytest.approx(probs[-1])
    rows = (tiny_cohort / "manifest.csv").read_text().splitlines()
    assert "h3k27m_probability" not in rows[0]  # the latent probability never reaches the manifest
    statuses = [int(r.split(",")[8]) for r in rows[1:]]
    expected = bayes_ceiling(statuses, probs)
    assert ceiling["status_signal"] == 1.5 and ceiling["n_patients"] == 2
    for key, value in expected.items():
        assert ceiling[key] == (pytest.approx(value) if value is not None else None), key
    assert "expected AUROC" in ceiling_text(ceiling)


def test_no_ceiling_for_classic_or_missing_synth_json(tmp_path: Path):
    assert read_status_ceiling(tmp_path) is None
    (tmp_path / "synth.json").write_text('{"style": "classic"}')
    assert read_status_ceiling(tmp_path) is None
    (tmp_path / "synth.json").write_text("{")
    with pytest.raises(ValueError, match="synth.json"):
        read_status_ceiling(tmp_path)


@pytest.mark.parametrize("argv,message", [(["--style", "classic", "--status-signal", "2"], "randomised styles only"),
                                          (["--status-signal", "-1"], "--status-signal must be")])
def test_synth_refuses_bad_status_signal(tmp_path: Path, capsys, argv, message):
    assert main(["synth", "--out", str(tmp_path / "c"), "--patients", "1", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "c").exists()


def test_expected_auroc_with_float_ranks(monkeypatch):
    """SciPy >= 1.18 returns float ranks for every method (an H200 machine's SciPy 1.18.1 crashed `dmg synth`
    with 'arrays used as indices must be of integer type'): the ceiling must not depend on the rank dtype."""
    import evaluation.classification_ceiling as ceiling_module

    p = np.array([0.9, 0.2, 0.2, 0.7, 0.4])
    expected = expected_auroc(p)
    real_rankdata = ceiling_module.rankdata
    monkeypatch.setattr(ceiling_module, "rankdata", lambda *a, **k: real_rankdata(*a, **k).astype(np.float64))
    assert expected_auroc(p) == pytest.approx(expected)
