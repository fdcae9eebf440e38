"""H3K27M status report: curve points, metrics files, t-SNE and saliency pictures."""

from __future__ import annotations

import ast
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from evaluation.classification import classification_metrics
from evaluation.reports.classification import (
    POOLED,
    plot_pr_curves,
    plot_roc_curves,
    plot_tsne,
    pr_curve_points,
    metrics_summary_text,
    roc_curve_points,
    write_classification_report,
)

RESAMPLES = 200


def _decode_png(png: bytes) -> np.ndarray:
    from matplotlib.image import imread

    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return imread(io.BytesIO(png), format="png")


def _tied_scores(seed: int, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    labels[:2] = (0, 1)
    scores = np.round(np.clip(0.3 * labels + rng.uniform(0, 0.7, n), 0, 1), 1)  # 0.1 steps: many ties
    return labels, scores


# Worked by hand: scores 0.9 (altered), 0.5 (altered, tied with a wild-type), 0.3 (altered), 0.1 (wild-type).
HAND_LABELS, HAND_SCORES = [1, 1, 0, 1, 0], [0.9, 0.5, 0.5, 0.3, 0.1]


def test_roc_points_by_hand():
    fpr, tpr, thr = roc_curve_points(HAND_LABELS, HAND_SCORES, drop_intermediate=False)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 1, 1])
    np.testing.assert_array_equal(thr, [np.inf, 0.9, 0.5, 0.3, 0.1])
    # (0, 0) -> (0, 1/3) -> (0.5, 2/3) -> (0.5, 1) -> (1, 1) has no collinear point to drop
    np.testing.assert_array_equal(roc_curve_points(HAND_LABELS, HAND_SCORES)[2], thr)
    collinear = roc_curve_points([1, 1, 1, 0], [0.9, 0.8, 0.7, 0.1])  # 0.8 lies on the line 0.9 -> 0.7
    np.testing.assert_array_equal(collinear[2], [np.inf, 0.9, 0.7, 0.1])


def test_pr_points_by_hand():
    precision, recall, thr = pr_curve_points(HAND_LABELS, HAND_SCORES)
    np.testing.assert_allclose(precision, [3 / 5, 3 / 4, 2 / 3, 1, 1])
    np.testing.assert_allclose(recall, [1, 1, 2 / 3, 1 / 3, 0])
    np.testing.assert_array_equal(thr, [0.1, 0.3, 0.5, 0.9])
    # the area under the step curve is the average precision: 1/3 * 1 + 1/3 * 2/3 + 1/3 * 3/4
    assert -np.sum(np.diff(recall) * precision[:-1]) == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)


def test_curves_refuse_one_class():
    with pytest.raises(ValueError, match="both classes"):
        roc_curve_points([1, 1, 1], [0.2, 0.5, 0.9])
    with pytest.raises(ValueError, match="both classes"):
        pr_curve_points([0, 0], [0.2, 0.5])


def _folds(n_folds: int = 3, n: int = 14, seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    folds = {}
    for f in range(n_folds):
        labels = rng.integers(0, 2, n)
        labels[:2] = (0, 1)
        probs = np.clip(0.35 * labels + rng.uniform(0, 0.65, n), 0, 1)
        dice = rng.uniform(0.5, 0.95, n)
        dice[3] = np.nan  # a patient without a reference mask
        folds[f"fold{f}"] = pd.DataFrame({"patient_id": [f"p{f}_{i:02d}" for i in range(n)],
                                          "center": ["center_a", "center_b"] * (n // 2),
                                          "probability": probs, "label": labels, "dice": dice,
                                          "n_slices": rng.integers(3, 9, n)})
    return folds


def _rows(table: pd.DataFrame, fold: str) -> dict[str, pd.Series]:
    return {r["metric"]: r for _, r in table[table["fold"] == fold].iterrows()}


def _assert_matches(rows: dict[str, pd.Series], labels, probs):
    expected = classification_metrics(labels, probs, resamples=RESAMPLES, seed=0)
    for m, value in expected.values.items():
        for got, want in ((rows[m]["value"], value), (rows[m]["ci_low"], expected.ci_low[m]),
                          (rows[m]["ci_high"], expected.ci_high[m])):
            assert got == pytest.approx(want, rel=1e-9, abs=1e-12), m
    assert int(rows["accuracy"]["n_patients"]) == expected.n_patients
    assert int(rows["accuracy"]["n_positive"]) == expected.n_positive


def test_report_files_and_metrics(tmp_path):
    folds = _folds()
    paths = write_classification_report(tmp_path, folds, resamples=RESAMPLES, title="test <report>")
    for name in ("patients.csv", "metrics.csv", "metrics.json", "roc.png", "pr.png", "report.html"):
        assert (tmp_path / name).is_file(), name
    assert not (tmp_path / "tsne.png").exists()
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp file
    assert set(paths) >= {"patients", "metrics_csv", "metrics_json", "roc", "pr", "report"}

    table = pd.read_csv(tmp_path / "metrics.csv")
    assert list(dict.fromkeys(table["fold"])) == ["fold0", "fold1", "fold2", POOLED]
    for name, frame in folds.items():
        _assert_matches(_rows(table, name), frame["label"].to_numpy(), frame["probability"].to_numpy())
        dice = frame["dice"].dropna()
        assert _rows(table, name)["dice"]["value"] == pytest.approx(dice.mean())
        assert int(_rows(table, name)["dice"]["n"]) == len(dice)
    pooled = pd.concat(folds.values())
    _assert_matches(_rows(table, POOLED), pooled["label"].to_numpy(), pooled["probability"].to_numpy())
    assert _rows(table, POOLED)["dice"]["value"] == pytest.approx(pooled["dice"].dropna().mean())

    patients = pd.read_csv(tmp_path / "patients.csv")
    assert len(patients) == len(pooled)
    assert {"fold", "patient_id", "center", "label", "probability", "predicted", "dice", "n_slices"} <= set(patients)
    np.testing.assert_array_equal(patients["predicted"], (patients["probability"] >= 0.5).astype(int))
    assert set(patients["predicted_status"]) <= {"altered", "wild-type"}

    document = json.loads((tmp_path / "metrics.json").read_text())
    assert document["groups"]["fold1"]["auroc"] == pytest.approx(_rows(table, "fold1")["auroc"]["value"])
    assert document["groups"][POOLED]["n_patients"] == len(pooled)
    assert document["bootstrap"]["resamples"] == RESAMPLES

    page = (tmp_path / "report.html").read_text()
    assert "test &lt;report&gt;" in page and "<report>" not in page
    srcs = [part.split('"', 1)[0] for part in page.split('src="')[1:]]
    assert len(srcs) == 2 and all(s.startswith("data:image/png;base64,") for s in srcs)  # self-contained
    assert "mean of the slice probabilities" in page and "bootstrap" in page
    assert _decode_png((tmp_path / "roc.png").read_bytes()).shape[2] in (3, 4)


def test_metrics_summary_text_prints_every_fold_with_its_cis_and_the_report(tmp_path):
    paths = write_classification_report(tmp_path, _folds(), resamples=RESAMPLES)
    table = pd.read_csv(paths["metrics_csv"])
    lines = metrics_summary_text(table, paths["report"]).splitlines()
    assert [line.split(" (")[0] for line in lines[:-1]] == ["fold0", "fold1", "fold2", POOLED]
    assert lines[-1] == f"report: {tmp_path / 'report.html'}"
    for fold, line in zip(["fold0", "fold1", "fold2", POOLED], lines):
        rows = _rows(table, fold)
        auroc = rows["auroc"]
        assert f"AUROC {auroc['value']:.3f} [{auroc['ci_low']:.3f}, {auroc['ci_high']:.3f}]" in line
        assert f"({int(auroc['n_patients'])} patients, {int(auroc['n_positive'])} altered)" in line
        assert "Accuracy" in line and "Dice (mask)" in line


def test_report_prints_the_ceiling_of_exactly_the_scored_patients(tmp_path, capsys):
    from evaluation.classification_ceiling import bayes_ceiling, status_ceiling_for

    folds = _folds(n_folds=2)
    cohort = tmp_path / "cohort"
    (cohort / "parameters").mkdir(parents=True)
    rng = np.random.default_rng(3)
    latent = {}
    for table in folds.values():
        for pid in table.patient_id:
            latent[pid] = float(rng.uniform())
            (cohort / "parameters" / f"{pid}.json").write_text(json.dumps({"h3k27m_probability": latent[pid]}))
    (cohort / "parameters" / "not_scored.json").write_text(json.dumps({"h3k27m_probability": 0.99}))
    (cohort / "synth.json").write_text(json.dumps({"h3k27m_ceiling": {"status_signal": 1.0, "bayes_auroc": 0.1}}))
    patients = pd.concat(folds.values())
    ceiling = status_ceiling_for(cohort, patients.patient_id.tolist(), patients.label.tolist())
    expected = bayes_ceiling(patients.label, [latent[p] for p in patients.patient_id])
    assert ceiling["bayes_auroc"] == pytest.approx(expected["bayes_auroc"]) and ceiling["n_patients"] == 28
    assert ceiling["scope"] == "evaluated patients" and ceiling["status_signal"] == 1.0
    # a patient without a recorded probability: the whole cohort's block, marked as such
    assert status_ceiling_for(cohort, ["nobody"], [1])["scope"] == "cohort"

    paths = write_classification_report(tmp_path / "r", folds, resamples=RESAMPLES, ceiling=ceiling)
    stored = json.loads(paths["metrics_json"].read_text())["ceiling"]
    assert stored["bayes_auroc"] == pytest.approx(ceiling["bayes_auroc"])
    assert f"AUROC {ceiling['bayes_auroc']:.3f}" in paths["report"].read_text().split("<h2>Metrics</h2>")[1]
    lines = metrics_summary_text(pd.read_csv(paths["metrics_csv"]), paths["report"], ceiling).splitlines()
    assert lines[-2].startswith("ceiling (Bayes-optimal") and f"AUROC {ceiling['bayes_auroc']:.3f}" in lines[-2]
    plain = write_classification_report(tmp_path / "plain", folds, resamples=RESAMPLES)
    assert json.loads(plain["metrics_json"].read_text())["ceiling"] is None
    assert "Ceiling" not in plain["report"].read_text()


def test_pool_subset_and_overlap(tmp_path):
    folds = _folds(n_folds=2)
    external = folds["fold0"].assign(probability=lambda d: 1 - d["probability"])  # same patients, other model
    folds["external"] = external
    with pytest.raises(ValueError, match="share patients"):
        write_classification_report(tmp_path / "a", folds, resamples=RESAMPLES)
    write_classification_report(tmp_path / "b", folds, resamples=RESAMPLES, pool=["fold0", "fold1"])
    table = pd.read_csv(tmp_path / "b" / "metrics.csv")
    both = pd.concat([folds["fold0"], folds["fold1"]])
    _assert_matches(_rows(table, POOLED), both["label"].to_numpy(), both["probability"].to_numpy())
    write_classification_report(tmp_path / "c", folds, resamples=RESAMPLES, pool=[])
    assert POOLED not in set(pd.read_csv(tmp_path / "c" / "metrics.csv")["fold"])


def test_report_refuses_bad_tables(tmp_path):
    with pytest.raises(ValueError, match="lacks column"):
        write_classification_report(tmp_path, {"f": pd.DataFrame({"patient_id": ["a"], "probability": [0.2]})})
    bad = pd.DataFrame({"patient_id": ["a", "b"], "probability": [0.2, 0.7], "label": [0, 2]})
    with pytest.raises(ValueError, match="fold 'f'"):
        write_classification_report(tmp_path, {"f": bad})


def test_tsne_png_decodes_with_the_right_size():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 8)
    features = rng.normal(size=(16, 12)) + 3.0 * labels[:, None]
    png = plot_tsne(features, labels, ids=[f"p{i}" for i in range(16)], figsize=(6.0, 5.0))
    image = _decode_png(png)
    assert image.shape[:2] == (500, 600)
    assert image[..., :3].std() > 0.01  # something is drawn
    assert plot_tsne(features, labels, figsize=(6.0, 5.0)) == plot_tsne(features, labels, figsize=(6.0, 5.0))
    small = plot_tsne(features[:3], labels[5:8], figsize=(4.0, 3.0))  # the smallest allowed N
    assert _decode_png(small).shape[:2] == (300, 400)
    with pytest.raises(ValueError, match="at least 3"):
        plot_tsne(features[:2], labels[:2])


def test_report_with_features_and_saliency(tmp_path):
    folds = _folds(n_folds=2, n=8)
    rng = np.random.default_rng(1)
    features = {pid: rng.normal(size=10) for f in folds.values() for pid in f["patient_id"]}
    del features["p1_07"]
    fake_png = plot_roc_curves({"x": ([0, 1, 1], [0.1, 0.8, 0.4])})
    write_classification_report(tmp_path, folds, features=features, saliency_pngs={"p0_01 slice 4": fake_png},
                                resamples=RESAMPLES)
    assert _decode_png((tmp_path / "tsne.png").read_bytes()).ndim == 3
    assert (tmp_path / "saliency" / "p0_01_slice_4.png").read_bytes() == fake_png
    document = json.loads((tmp_path / "metrics.json").read_text())
    assert document["tsne"]["n_points"] == 15 and document["tsne"]["n_without_features"] == 1
    assert (tmp_path / "report.html").read_text().count("data:image/png;base64,") == 4


def test_undefined_metrics_are_null_in_metrics_json(tmp_path):
    folds = _folds(n_folds=1, n=8)
    folds["altered_only"] = folds["fold0"].assign(patient_id=lambda f: f["patient_id"] + "b", label=1)
    write_classification_report(tmp_path, folds, resamples=RESAMPLES)
    text = (tmp_path / "metrics.json").read_text()
    assert "NaN" not in text and '"nan"' not in text
    group = json.loads(text)["groups"]["altered_only"]
    assert group["auroc"] is None and group["specificity"] is None and group["auroc_ci_low"] is None
    assert group["sensitivity"] is not None


def test_curve_plots_handle_a_one_class_fold():
    folds = {"a": ([0, 1, 1, 0], [0.1, 0.9, 0.6, 0.4]), "b": ([1, 1], [0.7, 0.8])}
    for plot in (plot_roc_curves, plot_pr_curves):
        image = _decode_png(plot(folds, figsize=(4.0, 4.0)))
        assert image.shape[:2] == (400, 400)


# ----------------------------------------------------------------------------- saliency


def _tiny_net(**flags):
    from pipeline.networks.h3k27m_net import H3K27MNet

    torch.manual_seed(0)
    return H3K27MNet(base_width=8, img_size=64, **flags)


def _slice(shift: int = 0, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    yy, xx = np.mgrid[:64, :64]
    lesion = (yy - 30 - shift) ** 2 + (xx - 36 + shift) ** 2 < 40
    head = (yy - 32) ** 2 / 600 + (xx - 32) ** 2 / 400 < 1
    image = head * 1.0 + lesion * 1.5 + 0.05 * np.random.default_rng(seed).normal(size=(64, 64))
    return torch.tensor(image[None], dtype=torch.float32), lesion


@pytest.mark.parametrize("flags", [{}, {"use_decoder": False, "use_transformer": False, "use_exchange": False}],
                         ids=["full", "cls_only"])
def test_gradcam_map(single_thread, flags):
    from pipeline.inference.saliency import default_target_layer, saliency_map

    net = _tiny_net(**flags)
    net.train()
    layer = dict(net.named_modules())[default_target_layer(net)]
    hooks_before = (len(layer._forward_hooks), len(layer._backward_hooks))
    for i, p in enumerate(net.parameters()):  # a training step's pending gradients must survive
        p.grad = torch.full_like(p, float(i))
    a = saliency_map(net, _slice()[0], target_class=1)
    b = saliency_map(net, _slice(shift=12, seed=1)[0], target_class=1)
    for heat in (a, b):
        assert heat.shape == (64, 64)
        assert heat.min() >= 0.0 and heat.max() == pytest.approx(1.0)
        assert np.unique(heat).size > 10  # not constant
    assert np.abs(a - b).max() > 0.05  # the target layer's activations and gradients were read
    # the net is left as it was: mode, hooks, parameter gradients
    assert net.training
    assert (len(layer._forward_hooks), len(layer._backward_hooks)) == hooks_before
    assert all(p.grad is not None and bool((p.grad == i).all()) for i, p in enumerate(net.parameters()))
    assert all(p.requires_grad for p in net.parameters())


def test_gradcam_reads_the_last_encoder_stage(single_thread):
    """Grad-CAM by hand on ``encoder.transformer3`` (the stage-3 map the head reads) gives the same map."""
    from pipeline.inference.saliency import default_target_layer, saliency_map

    net = _tiny_net().eval()
    assert default_target_layer(net) == "encoder.transformer3"
    assert default_target_layer(_tiny_net(use_transformer=False)) == "encoder.resnet.layer3"
    image = _slice()[0]
    store = {}
    layer = net.encoder.transformer3
    handle = layer.register_forward_hook(lambda m, i, o: store.update(act=o))
    out = net(image[None].clone())
    grad = torch.autograd.grad(out["class_logits"][0, 1], store["act"])[0]
    handle.remove()
    cam = torch.relu((grad.mean(dim=(2, 3), keepdim=True) * store["act"]).sum(1, keepdim=True))
    assert cam.shape[-2:] == (4, 4)  # stride 16
    cam = torch.nn.functional.interpolate(cam, size=(64, 64), mode="bilinear", align_corners=False)[0, 0].detach()
    expected = (cam / cam.max()).numpy()
    np.testing.assert_allclose(saliency_map(net, image, target_class=1), expected, atol=1e-5)
    other_layer = saliency_map(net, image, target_class=1, target_layer="encoder.resnet.layer2")
    assert np.abs(other_layer - expected).max() > 0.05


def test_saliency_checks_its_arguments(single_thread):
    from pipeline.inference.saliency import saliency_map

    net = _tiny_net()
    image = _slice()[0]
    with pytest.raises(ValueError, match="not a module"):
        saliency_map(net, image, target_layer="encoder.nonexistent")
    with pytest.raises(ValueError, match="unknown saliency method"):
        saliency_map(net, image, method="occlusion")
    with pytest.raises(ValueError, match="target_class"):
        saliency_map(net, image, target_class=2)


def test_gradient_map_and_overlay_png(single_thread, tmp_path):
    from pipeline.inference.saliency import saliency_map, saliency_overlay

    net = _tiny_net().eval()
    image, lesion = _slice()
    heat = saliency_map(net, image[0], method="gradient")  # (H, W) input works too
    assert heat.shape == (64, 64) and np.unique(heat).size > 100
    assert not net.training
    png = saliency_overlay(net, image, mask=torch.tensor(lesion[None]), method="gradcam")
    picture = _decode_png(png)
    assert picture.shape[:2] == (430, 800)
    assert picture[..., :3].std() > 0.05


def test_evaluation_never_imports_pipeline():
    root = Path(__file__).resolve().parents[2] / "evaluation"
    offenders = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            offenders += [f"{path.name}: {n}" for n in names if n == "pipeline" or n.startswith("pipeline.")]
    assert len(list(root.rglob("*.py"))) >= 10
    assert not offenders, offenders


def test_radiological_view_puts_anterior_up_and_patient_right_on_the_left():
    from pipeline.inference.saliency import radiological

    ras = np.zeros((5, 4))  # axis 0: left -> right, axis 1: posterior -> anterior
    ras[4, 3] = 1  # right-anterior corner
    ras[0, 0] = 2  # left-posterior corner
    view = radiological(ras)
    assert view.shape == (4, 5)
    assert view[0, 0] == 1 and view[-1, -1] == 2
