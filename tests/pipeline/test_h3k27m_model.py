"""Tests for the H3K27M co-training model: network, ablations, masked pretraining, loss, classification metrics."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from monai.losses import FocalLoss
from monai.networks.blocks import ChannelSELayer
from torch import nn

import evaluation.classification
from evaluation.classification import (
    CLASSIFICATION_METRICS,
    average_precision,
    classification_metrics,
    patient_probabilities,
    point_metrics,
    roc_auc,
    threshold_metrics,
)
from pipeline.engines import (
    CoTrainingLoss,
    InpaintingModel,
    MaskedReconstructionLoss,
    apply_patch_mask,
    encoder_state_dict,
    load_pretrained_encoder,
    random_patch_mask,
)
from pipeline.networks import (
    H3K27M_CONFIGS,
    AttentionExchange,
    FeatureMapTransformer,
    H3K27MEncoder,
    H3K27MNet,
    MultiScaleAttentionHead,
    ResidualUpBlock,
    ResNetEncoder,
    build_h3k27m_net,
    get_h3k27m_config,
)
from tests.helpers import count_modules as count

W = 8  # tiny base width: channels 8, 16, 32
SIZE = 64


pytestmark = pytest.mark.usefixtures("single_thread")


def n_params(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def tiny(name: str, **kwargs) -> H3K27MNet:
    torch.manual_seed(0)
    return build_h3k27m_net(name, base_width=W, img_size=SIZE, **kwargs)


# ---------------------------------------------------------------- network


def test_encoder_strides_and_channels_at_256():
    x = torch.randn(1, 1, 256, 256)
    with torch.no_grad():
        plain = ResNetEncoder(1, W)(x)
        with_transformers = H3K27MEncoder(1, W, img_size=256, use_transformer=True).eval()(x)
    # strides 2, 4, 8, 16
    expected = {"stem": (W, 128), "stage1": (W, 64), "stage2": (2 * W, 32), "stage3": (4 * W, 16)}
    for feats in (plain, with_transformers):
        assert {k: (v.shape[1], v.shape[2]) for k, v in feats.items()} == expected
        assert all(v.shape[2] == v.shape[3] for v in feats.values())
    # ResNet-18 stages 1-3: two basic blocks each, 7x7 stride-2 stem
    enc = ResNetEncoder(1, 64)
    assert [len(enc.layer1), len(enc.layer2), len(enc.layer3)] == [2, 2, 2]
    assert enc.conv1.kernel_size == (7, 7) and enc.conv1.stride == (2, 2)
    assert not hasattr(enc, "layer4") and not hasattr(enc, "fc")


@pytest.mark.parametrize("name", list(H3K27M_CONFIGS))
def test_output_shapes_and_every_parameter_used(name):
    net = tiny(name)
    out = net(torch.rand(2, 1, SIZE, SIZE))
    assert set(out) == {"class_logits", "mask_logits", "features"}
    assert out["class_logits"].shape == (2, 2)
    assert out["features"].shape == (2, 7 * W) == (2, net.feature_dim)
    if H3K27M_CONFIGS[name].use_decoder:
        assert out["mask_logits"].shape == (2, 1, SIZE, SIZE)
        loss = out["class_logits"].sum() + out["mask_logits"].sum()
    else:
        assert out["mask_logits"] is None
        loss = out["class_logits"].sum()
    loss.backward()
    unused = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not unused  # every module a configuration builds takes part


def test_other_sizes_and_bad_inputs():
    net = tiny("full").eval()
    with torch.no_grad():
        out = net(torch.rand(1, 1, 96, 64))  # position embeddings interpolated to another grid
    assert out["mask_logits"].shape == (1, 1, 96, 64)
    with pytest.raises(ValueError, match="multiple of 16"):
        net(torch.rand(1, 1, 60, 64))
    with pytest.raises(ValueError, match="input channel"):
        net(torch.rand(1, 2, 64, 64))
    with pytest.raises(ValueError, match="use_decoder"):
        H3K27MNet(base_width=W, img_size=SIZE, use_decoder=False, use_exchange=True)


EXPECTED_MODULES = {  # name: (transformer layers, transformers, up-blocks, exchanges, SE layers)
    "cls_only": (0, 0, 0, 0, 3),
    "cls+pretrain": (0, 0, 0, 0, 3),
    "cls+seg": (0, 0, 4, 0, 3),
    "cls+seg+attention": (0, 0, 4, 2, 5),
    "full": (4, 2, 4, 2, 5),
}


@pytest.mark.parametrize("name", list(H3K27M_CONFIGS))
def test_each_configuration_has_exactly_its_modules(name):
    net = tiny(name)
    counts = (
        count(net, nn.TransformerEncoderLayer),
        count(net, FeatureMapTransformer),
        count(net, ResidualUpBlock),
        count(net, AttentionExchange),
        count(net, ChannelSELayer),
    )
    assert counts == EXPECTED_MODULES[name]
    assert count(net, MultiScaleAttentionHead) == 1
    for layer in (m for m in net.modules() if isinstance(m, nn.TransformerEncoderLayer)):
        assert layer.self_attn.num_heads == 8


def test_ablation_switches_add_exactly_their_parameters():
    nets = {name: tiny(name) for name in H3K27M_CONFIGS}
    p = {name: n_params(net) for name, net in nets.items()}
    assert p["cls+pretrain"] == p["cls_only"]  # pretraining is a training-time choice
    assert p["cls+seg"] - p["cls_only"] == n_params(nets["cls+seg"].decoder)
    assert p["cls+seg+attention"] - p["cls+seg"] == n_params(nets["cls+seg+attention"].exchange)
    enc = nets["full"].encoder
    assert p["full"] - p["cls+seg+attention"] == n_params(enc.transformer2) + n_params(enc.transformer3)
    assert get_h3k27m_config("CLS-only") is H3K27M_CONFIGS["cls_only"]
    assert [c.pretrain for c in H3K27M_CONFIGS.values()] == [False, True, True, True, True]
    with pytest.raises(ValueError, match="fixes use_decoder"):
        build_h3k27m_net("cls_only", use_decoder=True)
    with pytest.raises(ValueError, match="valid names"):
        get_h3k27m_config("cls+transformer")


@pytest.mark.parametrize("name,head_reads_decoder", [("cls+seg", False), ("cls+seg+attention", True), ("full", True)])
def test_head_reads_decoder_only_with_exchange(name, head_reads_decoder):
    net = tiny(name).eval()
    x = torch.rand(2, 1, SIZE, SIZE)
    with torch.no_grad():
        before = net(x)
        for p in net.decoder.up64.parameters():  # decoder feature at stride 4
            p.add_(torch.randn_like(p))
        after = net(x)
    assert not torch.allclose(before["mask_logits"], after["mask_logits"])
    assert torch.allclose(before["class_logits"], after["class_logits"]) != head_reads_decoder


def test_lesion_pooling_averages_each_map_under_the_weights():
    torch.manual_seed(0)
    head = MultiScaleAttentionHead((4, 8), lesion_pooling=True).eval()
    maps = [torch.rand(2, 4, 8, 8), torch.rand(2, 8, 4, 4)]
    weights = torch.zeros(2, 1, 8, 8)
    weights[0, 0, 2:6, 4:8] = 1.0  # patient 0: a lesion of 4x4 pixels (2x2 on the coarser map)
    with torch.no_grad():
        logits, vector = head(maps, weights)
        attended = [att(m) for att, m in zip(head.attention, maps)]
    assert head.feature_dim == 2 * (4 + 8) and vector.shape == (2, 24)
    torch.testing.assert_close(vector[:, :12], torch.cat([a.mean((2, 3)) for a in attended], dim=1))
    lesion = vector[:, 12:]
    torch.testing.assert_close(lesion[0, :4], attended[0][0, :, 2:6, 4:8].mean((1, 2)), rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(lesion[0, 4:], attended[1][0, :, 1:3, 2:4].mean((1, 2)), rtol=1e-3, atol=1e-3)
    assert torch.equal(lesion[1], torch.zeros(12))  # no lesion: zeros, not NaN
    with pytest.raises(ValueError, match="weight map"):
        head(maps)


def test_lesion_pooling_net_reads_its_own_mask_without_training_it():
    net = tiny("full", lesion_pooling=True)
    x = torch.rand(2, 1, SIZE, SIZE)
    out = net(x)
    assert out["features"].shape == (2, 14 * W) == (2, net.feature_dim)
    out["class_logits"].sum().backward()
    # the status loss reaches the decoder through the attention exchange, but not the mask's output layer
    assert all(p.grad is None or not p.grad.abs().sum() > 0 for p in net.decoder.out.parameters())
    net.zero_grad()
    out = net(x)
    (out["class_logits"].sum() + out["mask_logits"].sum()).backward()
    assert not [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    with torch.no_grad():  # the status depends on where the net puts the lesion
        before = net.eval()(x)["class_logits"]
        net.decoder.out.bias.add_(5.0)
        after = net(x)["class_logits"]
    assert not torch.allclose(before, after)
    with pytest.raises(ValueError, match="lesion_pooling"):
        tiny("cls_only", lesion_pooling=True)


# ---------------------------------------------------------------- masked-patch pretraining


@pytest.mark.parametrize(
    "shape,patch,ratio,expected",
    [((3, 1, 64, 64), 16, 0.45, 7), ((2, 1, 256, 256), 16, 0.45, 115), ((2, 2, 32, 48), 8, 0.5, 12),
     ((1, 1, 32, 32), 16, 0.0, 0)],
)
def test_patch_mask_ratio_is_exact(shape, patch, ratio, expected):
    mask = random_patch_mask(shape, patch, ratio, torch.Generator().manual_seed(0))
    assert mask.dtype == torch.bool and mask.shape == (shape[0], shape[2] // patch, shape[3] // patch)
    assert mask.flatten(1).sum(1).tolist() == [expected] * shape[0]
    again = random_patch_mask(shape, patch, ratio, torch.Generator().manual_seed(0))
    assert torch.equal(mask, again)
    with pytest.raises(ValueError, match="multiple of the patch"):
        random_patch_mask((1, 1, 40, 64), 16)


def test_apply_patch_mask_zeros_exactly_the_masked_patches():
    images = torch.rand(2, 1, 64, 64) + 0.5
    mask = random_patch_mask(images.shape, 16, 0.45, torch.Generator().manual_seed(1))
    masked = apply_patch_mask(images, mask)
    for b in range(2):
        for i in range(4):
            for j in range(4):
                tile = masked[b, 0, 16 * i : 16 * i + 16, 16 * j : 16 * j + 16]
                original = images[b, 0, 16 * i : 16 * i + 16, 16 * j : 16 * j + 16]
                assert torch.equal(tile, torch.zeros_like(tile) if mask[b, i, j] else original)


@pytest.mark.parametrize("kind", ["l1", "mse"])
def test_reconstruction_loss_counts_masked_pixels_only(kind):
    torch.manual_seed(0)
    target, prediction = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    mask = random_patch_mask(target.shape, 8, 0.45, torch.Generator().manual_seed(2))
    loss_fn = MaskedReconstructionLoss(kind)
    loss = loss_fn(prediction, target, mask)
    b, i, j = (int(v) for v in (~mask).nonzero()[0])
    changed = prediction.clone()
    changed[b, 0, 8 * i + 3, 8 * j + 5] += 5.0
    assert loss_fn(changed, target, mask) == loss
    b, i, j = (int(v) for v in mask.nonzero()[0])
    changed = prediction.clone()
    changed[b, 0, 8 * i + 3, 8 * j + 5] += 5.0
    assert loss_fn(changed, target, mask) != loss
    pixels = mask.repeat_interleave(8, 1).repeat_interleave(8, 2).unsqueeze(1)
    diff = (prediction - target)[pixels]
    expected = diff.abs().mean() if kind == "l1" else diff.square().mean()
    torch.testing.assert_close(loss, expected)


def test_inpainting_model_trains_the_shared_encoder():
    net = tiny("full")
    model = InpaintingModel(net)
    images = torch.rand(2, 1, SIZE, SIZE)
    mask = random_patch_mask(images.shape, 16, 0.45, torch.Generator().manual_seed(0))
    out = model(apply_patch_mask(images, mask))
    assert out.shape == images.shape
    MaskedReconstructionLoss()(out, images, mask).backward()
    assert model.encoder is net.encoder
    assert net.encoder.resnet.conv1.weight.grad is not None
    assert net.decoder.out.weight.grad is None  # the mask decoder is not part of pretraining


def test_encoder_transfer_loads_exactly_the_encoder():
    source = InpaintingModel(tiny("full"))
    with torch.no_grad():
        for p in source.parameters():
            p.add_(1.0)
    weights = encoder_state_dict(source)
    target = tiny("full")
    head_before = {k: v.clone() for k, v in target.state_dict().items() if not k.startswith("encoder.")}
    report = load_pretrained_encoder(target, weights)
    assert report.loaded == list(target.encoder.state_dict()) and not report.skipped and not report.not_pretrained
    for k, v in target.encoder.state_dict().items():
        assert torch.equal(v, weights[k])
    for k, v in target.state_dict().items():
        if not k.startswith("encoder."):
            assert torch.equal(v, head_before[k])  # decoder, exchange and head untouched

    # transformers pretrained but absent in the net: ResNet part loaded, transformers reported
    report = load_pretrained_encoder(tiny("cls+pretrain"), weights)
    assert all(k.startswith("resnet.") for k in report.loaded)
    assert report.skipped and all(k.startswith("transformer") for k in report.skipped)
    # ... and the other way round
    report = load_pretrained_encoder(tiny("full"), encoder_state_dict(tiny("cls_only")))
    assert report.not_pretrained == [k for k in tiny("full").encoder.state_dict() if k.startswith("transformer")]


def test_encoder_transfer_refuses_mismatches_clearly():
    weights = encoder_state_dict(tiny("full"))
    target = build_h3k27m_net("full", base_width=16, img_size=SIZE)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    message = r"shape mismatch.*base_width.*resnet\.conv1\.weight: checkpoint \(8, 1, 7, 7\) vs net \(16, 1, 7, 7\)"
    with pytest.raises(ValueError, match=message):
        load_pretrained_encoder(target, weights)
    assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())  # nothing copied
    with pytest.raises(ValueError, match="whole-model state dict"):
        load_pretrained_encoder(tiny("full"), tiny("full").state_dict())
    partial = {k: v for k, v in weights.items() if not k.startswith("resnet.layer3")}
    with pytest.raises(ValueError, match="lacks .* ResNet tensors"):
        load_pretrained_encoder(tiny("full"), partial)


# ---------------------------------------------------------------- co-training loss


def test_cotraining_loss_terms_and_weights():
    torch.manual_seed(0)
    out = {"class_logits": torch.randn(4, 2), "mask_logits": torch.randn(4, 1, 16, 16)}
    labels, masks = torch.tensor([0, 1, 1, 0]), (torch.rand(4, 1, 16, 16) > 0.7).float()
    terms = CoTrainingLoss().terms(out, labels, masks)
    ce = nn.functional.cross_entropy(out["class_logits"], labels)
    focal = FocalLoss(gamma=2.0)(out["mask_logits"], masks)
    prob = torch.sigmoid(out["mask_logits"]).flatten(1)
    inter = (prob * masks.flatten(1)).sum(1)
    iou = (1 - (inter + 1e-5) / (prob.sum(1) + masks.flatten(1).sum(1) - inter + 1e-5)).mean()
    torch.testing.assert_close(terms["ce"], ce)
    torch.testing.assert_close(terms["focal"], focal)
    torch.testing.assert_close(terms["iou"], iou)
    torch.testing.assert_close(terms["loss"], focal + iou + 0.1 * ce)
    weighted = CoTrainingLoss(focal_weight=2.0, iou_weight=0.5, ce_weight=1.0)(out, labels, masks)
    torch.testing.assert_close(weighted, 2 * focal + 0.5 * iou + ce)
    perfect = {"class_logits": out["class_logits"], "mask_logits": (masks * 2 - 1) * 50}
    assert CoTrainingLoss().terms(perfect, labels, masks)["iou"] < 1e-4


def test_status_on_lesion_slices_leaves_lesion_free_slices_to_the_mask():
    torch.manual_seed(0)
    logits = torch.randn(4, 2, requires_grad=True)
    out = {"class_logits": logits, "mask_logits": torch.randn(4, 1, 16, 16)}
    labels, masks = torch.tensor([0, 1, 1, 0]), torch.zeros(4, 1, 16, 16)
    masks[1, 0, 3:6, 3:6] = 1.0
    masks[2, 0, 8, 8] = 1.0
    lesion_only = CoTrainingLoss(status_on_lesion_slices=True)
    everything = CoTrainingLoss().terms(out, labels, masks)
    terms = lesion_only.terms(out, labels, masks)
    torch.testing.assert_close(terms["ce"], nn.functional.cross_entropy(logits[1:3], labels[1:3]))
    for key in ("focal", "iou"):  # the mask terms still read every slice, lesion-free ones included
        torch.testing.assert_close(terms[key], everything[key])
    has_mask = torch.tensor([True, False, True, True])  # slice 1's mask is unknown: not a lesion slice
    torch.testing.assert_close(lesion_only.terms(out, labels, masks, has_mask)["ce"],
                               nn.functional.cross_entropy(logits[2:3], labels[2:3]))
    empty = lesion_only.terms(out, labels, torch.zeros(4, 1, 16, 16))["ce"]
    empty.backward()
    assert empty.item() == 0.0 and torch.equal(logits.grad, torch.zeros(4, 2))
    with pytest.raises(ValueError, match="reference masks"):
        lesion_only(out, labels, None)


def test_cotraining_loss_without_masks():
    torch.manual_seed(0)
    out = {"class_logits": torch.randn(4, 2), "mask_logits": torch.randn(4, 1, 16, 16)}
    labels, masks = torch.tensor([0, 1, 1, 0]), (torch.rand(4, 1, 16, 16) > 0.7).float()
    ce_only = 0.1 * nn.functional.cross_entropy(out["class_logits"], labels)
    loss_fn = CoTrainingLoss()
    torch.testing.assert_close(loss_fn(out, labels, None), ce_only)  # no masks at all
    cls_only = {"class_logits": out["class_logits"], "mask_logits": None, "features": torch.zeros(4, 3)}
    torch.testing.assert_close(loss_fn(cls_only, labels, masks), ce_only)  # cls_only net
    torch.testing.assert_close(loss_fn(out, labels, masks, torch.zeros(4, dtype=torch.bool)), ce_only)
    # flagged samples: the unflagged ones' mask rows do not matter; the mask terms average the flagged ones
    has_mask = torch.tensor([True, False, True, False])
    garbage = masks.clone()
    garbage[~has_mask] = 1.0 - garbage[~has_mask]
    a, b = loss_fn.terms(out, labels, masks, has_mask), loss_fn.terms(out, labels, garbage, has_mask)
    torch.testing.assert_close(a["loss"], b["loss"])
    sub = loss_fn.terms({k: v[has_mask] for k, v in out.items()}, labels[has_mask], masks[has_mask])
    torch.testing.assert_close(a["focal"], sub["focal"])
    torch.testing.assert_close(a["iou"], sub["iou"])
    torch.testing.assert_close(a["ce"], ce_only / 0.1)  # CE over the whole batch
    assert int(a["n_masked"]) == 2


def toy_set(n: int = 32, size: int = SIZE, seed: int = 0):
    """A blob in every image (the 'tumour', with its mask); class 1 = bright blob, class 0 = faint blob."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images, masks = torch.zeros(n, 1, size, size), torch.zeros(n, 1, size, size)
    labels = torch.arange(n) % 2
    for i in range(n):
        cy, cx = torch.randint(16, size - 16, (2,), generator=g).tolist()
        r = 6 + int(torch.randint(0, 5, (1,), generator=g))
        blob = ((yy - cy) ** 2 + (xx - cx) ** 2) < r * r
        masks[i, 0] = blob.float()
        images[i, 0] = 0.3 + 0.05 * torch.randn(size, size, generator=g) + blob * (0.6 if labels[i] else 0.15)
    return images, masks, labels


def test_tiny_cotraining_run_learns_the_toy_status():
    images, masks, labels = toy_set()
    net = tiny("full", transformer_dropout=0.0)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    loss_fn = CoTrainingLoss()
    has_mask = torch.arange(len(labels)) % 4 != 3  # a quarter of the slices without reference mask
    g = torch.Generator().manual_seed(1)
    net.train()
    first = None
    for _ in range(100):
        idx = torch.randperm(len(labels), generator=g)[:8]
        loss = loss_fn(net(images[idx]), labels[idx], masks[idx], has_mask[idx])
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        out = net(images)
    prob = out["class_logits"].softmax(1)[:, 1].numpy()
    assert roc_auc(labels.numpy(), prob) > 0.9
    assert float(loss_fn(out, labels, masks)) < first


# ---------------------------------------------------------------- classification metrics


def test_ranking_metrics_by_hand_with_ties():
    # altered 0.9 and 0.5, wild-type 0.5 and 0.1: of the 4 (altered, wild-type) pairs one is tied (counts 1/2)
    y, s = [0, 1, 1, 0], [0.5, 0.5, 0.9, 0.1]
    assert roc_auc(y, s) == pytest.approx(3.5 / 4)
    # thresholds 0.9 (recall 1/2, precision 1) and 0.5 (recall 1, precision 2/3)
    assert average_precision(y, s) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert roc_auc([0, 1], [0.5, 0.5]) == 0.5
    assert math.isnan(roc_auc([1, 1, 1], [0.2, 0.3, 0.4])) and math.isnan(roc_auc([], []))
    assert math.isnan(average_precision([0, 0], [0.1, 0.9]))
    assert average_precision([1, 1], [0.1, 0.9]) == 1.0  # only altered patients: every threshold is precise


def test_ranking_metrics_equal_sklearn_with_ties():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(60):
        n = int(rng.integers(2, 80))
        y = rng.integers(0, 2, n)
        if y.min() == y.max():
            continue
        s = np.round(rng.random(n), 1)  # many ties
        assert roc_auc(y, s) == pytest.approx(metrics.roc_auc_score(y, s), abs=1e-12)
        assert average_precision(y, s) == pytest.approx(metrics.average_precision_score(y, s), abs=1e-12)
        checked += 1
    assert checked > 40


def test_threshold_metrics_by_hand():
    y = [1, 1, 1, 0, 0]
    p = [0.9, 0.5, 0.2, 0.5, 0.1]  # 0.5 counts as altered
    assert threshold_metrics(y, p) == {"accuracy": 3 / 5, "sensitivity": 2 / 3, "specificity": 1 / 2}
    assert threshold_metrics(y, p, threshold=0.6) == {"accuracy": 3 / 5, "sensitivity": 1 / 3, "specificity": 1.0}
    with pytest.raises(ValueError, match="0 \\(wild-type\\) or 1"):
        threshold_metrics([0, 2], [0.1, 0.2])


def test_bootstrap_ci_contains_estimate_and_is_seeded():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    p = np.clip(0.35 * y + 0.65 * rng.random(60), 0, 1)
    res = classification_metrics(y, p, resamples=500, seed=7)
    assert set(res.values) == set(CLASSIFICATION_METRICS)
    for m in CLASSIFICATION_METRICS:
        assert res.ci_low[m] <= res.values[m] <= res.ci_high[m]
        assert res.ci_low[m] < res.ci_high[m]
    assert res.values["auroc"] == roc_auc(y, p)
    same = classification_metrics(y, p, resamples=500, seed=7)
    other = classification_metrics(y, p, resamples=500, seed=8)
    assert same.as_dict() == res.as_dict()
    assert other.ci_low != res.ci_low
    frame = res.to_frame()
    assert list(frame.metric) == list(CLASSIFICATION_METRICS)
    assert list(frame.columns) == ["metric", "value", "ci_low", "ci_high"]


def test_labels_come_first_as_in_sklearn():
    y, p = [0, 1, 1, 0], [0.2, 0.9, 0.6, 0.4]
    assert point_metrics(y, p)["auroc"] == classification_metrics(y, p, resamples=0).values["auroc"] == 1.0
    with pytest.raises(ValueError, match="labels must be 0"):
        classification_metrics(p, y, resamples=0)  # the old (probabilities, labels) order is refused


def test_bootstrap_skips_and_counts_single_class_draws():
    y, p = np.array([0, 1, 0, 0]), np.array([0.1, 0.8, 0.6, 0.3])
    res = classification_metrics(y, p, resamples=300, seed=0)
    draws = np.random.default_rng(0).integers(0, 4, size=(300, 4))
    single = int(np.sum(y[draws].sum(1) == 0) + np.sum(y[draws].sum(1) == 4))
    assert res.resamples_skipped == single > 0
    assert res.values["auroc"] == 1.0 and res.values["specificity"] == 2 / 3
    one_class = classification_metrics([0, 0, 0], [0.2, 0.7, 0.4], resamples=50)
    assert one_class.resamples_skipped == 50
    assert math.isnan(one_class.values["auroc"]) and math.isnan(one_class.ci_low["auroc"])


def test_bootstrap_ci_is_the_percentile_of_paired_two_class_draws():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 12)
    y[:2] = (0, 1)
    p = np.round(np.clip(0.3 * y + 0.7 * rng.random(12), 0, 1), 1)  # ties
    res = classification_metrics(y, p, resamples=300, confidence=0.8, seed=2)
    # written out: draws of the patients (label and probability together), single-class draws left out
    draws = np.random.default_rng(2).integers(0, 12, (300, 12))
    kept = [point_metrics(y[i], p[i]) for i in draws if 0 < y[i].sum() < 12]
    assert res.resamples_skipped == 300 - len(kept)
    for m in CLASSIFICATION_METRICS:
        low, high = np.percentile([k[m] for k in kept], [10.0, 90.0])
        assert (res.ci_low[m], res.ci_high[m]) == pytest.approx((low, high), rel=1e-12), m
    tied = classification_metrics(y, np.full(12, 0.4), resamples=100)  # all scores equal: AUROC 0.5 in every draw
    assert (tied.ci_low["auroc"], tied.ci_high["auroc"]) == (0.5, 0.5)


def test_patient_aggregation():
    table = pd.DataFrame(
        {
            "patient_id": ["p2", "p1", "p2", "p1", "p1", "p3"],
            "probability": [0.9, 0.2, 0.1, 0.4, 0.9, 0.7],
            "label": [1, 0, 1, 0, 0, 1],
        }
    )
    mean = patient_probabilities(table)  # mean is the default
    assert list(mean.patient_id) == ["p2", "p1", "p3"]  # order of first appearance
    np.testing.assert_allclose(mean.probability, [0.5, 0.5, 0.7])
    assert list(mean.n_slices) == [2, 3, 1] and list(mean.label) == [1, 0, 1]
    np.testing.assert_allclose(patient_probabilities(table, "max").probability, [0.9, 0.9, 0.7])
    np.testing.assert_allclose(patient_probabilities(table, "top-k mean", k=2).probability, [0.5, 0.65, 0.7])
    with pytest.raises(ValueError, match="aggregation"):
        patient_probabilities(table, "median")
    bad = table.assign(label=[1, 0, 0, 0, 0, 1])
    with pytest.raises(ValueError, match="conflicting labels.*p2"):
        patient_probabilities(bad)


def test_classification_metrics_do_not_import_pipeline():
    # statically, so that an import inside a function counts too
    tree = ast.parse(Path(evaluation.classification.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported and not {m for m in imported if m.split(".")[0] == "pipeline"}
