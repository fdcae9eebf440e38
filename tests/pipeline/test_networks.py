"""Tests for pipeline.networks: attention blocks, MSCG generator, patch discriminator, variants."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.networks import (
    CBAM,
    VARIANTS,
    MSCGenerator,
    PatchDiscriminator,
    PyramidPoolingModule,
    SpatialChannelSE,
    build_variant,
    get_variant,
)
from tests.helpers import count_modules as count

TINY = (8, 16, 32, 64, 128)  # depth 4, like the default, at 1/4 width
TINY_DISC = dict(channels=(8, 16, 32, 64), cbam_reduction=4)


pytestmark = pytest.mark.usefixtures("single_thread")


# ---------------------------------------------------------------- blocks


@pytest.mark.parametrize("spatial_dims,shape", [(2, (2, 8, 12, 10)), (3, (2, 8, 6, 8, 5))])
@pytest.mark.parametrize("combine", ["add", "max"])
def test_scse_shape_and_effect(spatial_dims, shape, combine):
    torch.manual_seed(0)
    block = SpatialChannelSE(spatial_dims, shape[1], r=2, combine=combine)
    x = torch.randn(shape)
    y = block(x)
    assert y.shape == x.shape
    assert not torch.allclose(y, x)
    c, s = block.cse(x), block.sse(x)
    expected = torch.maximum(c, s) if combine == "max" else c + s
    torch.testing.assert_close(y, expected)


def test_scse_rejects_bad_combine_and_handles_narrow_layers():
    with pytest.raises(ValueError, match="combine"):
        SpatialChannelSE(2, 8, combine="mul")
    y = SpatialChannelSE(2, 1, r=2)(torch.randn(1, 1, 4, 4))  # r clamped so the bottleneck keeps one unit
    assert y.shape == (1, 1, 4, 4)


@pytest.mark.parametrize("spatial_dims,shape", [(2, (2, 8, 12, 10)), (3, (2, 8, 6, 8, 5))])
def test_cbam_shape_and_effect(spatial_dims, shape):
    torch.manual_seed(0)
    block = CBAM(spatial_dims, shape[1], reduction=4, kernel_size=7)
    x = torch.randn(shape)
    y = block(x)
    assert y.shape == x.shape
    assert not torch.allclose(y, x)
    # channel then spatial attention; both gates are sigmoids in (0, 1)
    torch.testing.assert_close(y, block.spatial(block.channel(x)))
    assert torch.all(y.abs() <= x.abs() + 1e-6)


@pytest.mark.parametrize("channels,reduction,hidden", [(512, 16, 32), (32, 16, 8), (4, 16, 4), (64, 2, 32)])
def test_cbam_hidden_width(channels, reduction, hidden):
    block = CBAM(2, channels, reduction=reduction)
    assert block.channel.mlp[0].out_channels == hidden


def test_cbam_rejects_even_kernel():
    with pytest.raises(ValueError, match="odd"):
        CBAM(2, 8, kernel_size=4)


@pytest.mark.parametrize("spatial_dims,shape", [(2, (2, 8, 15, 15)), (2, (1, 8, 4, 4)), (3, (2, 8, 6, 7, 5))])
def test_pyramid_pooling_shape_and_effect(spatial_dims, shape):
    torch.manual_seed(0)
    block = PyramidPoolingModule(spatial_dims, shape[1], out_channels=6, bins=(1, 2, 3, 6))
    assert len(block.branches) == 4
    block.train()  # batch size 1, bin 1: the branch norm must cope in training mode
    y = block(torch.randn(shape))
    assert y.shape == (shape[0], 6, *shape[2:])
    same = PyramidPoolingModule(spatial_dims, shape[1])
    x = torch.randn(shape)
    assert same(x).shape == x.shape
    assert not torch.allclose(same(x), x)


def test_pyramid_pooling_rejects_bad_bins():
    with pytest.raises(ValueError, match="bins"):
        PyramidPoolingModule(2, 8, bins=(1, 0))


# ---------------------------------------------------------------- generator


@pytest.mark.parametrize("size", [(64, 64), (96, 96), (50, 70)])
def test_generator_output_matches_input_size(size):
    torch.manual_seed(0)
    gen = MSCGenerator(in_channels=1, out_channels=1, features=TINY)
    y = gen(torch.randn(2, 1, *size))
    assert y.shape == (2, 1, *size)
    assert torch.isfinite(y).all()


def test_generator_240_slice_tiny_width():
    torch.manual_seed(0)
    gen = MSCGenerator(features=(4, 8, 16, 32, 64), dropout=0.1).eval()
    with torch.no_grad():
        y = gen(torch.rand(1, 1, 240, 240))
        y_again = gen(torch.rand(1, 1, 240, 240))
    assert y.shape == (1, 1, 240, 240)
    assert torch.isfinite(y).all()
    assert not torch.allclose(y, y_again)  # the output depends on the input


def test_generator_3d_and_multichannel():
    torch.manual_seed(0)
    gen = MSCGenerator(spatial_dims=3, in_channels=2, out_channels=3, features=(4, 8, 16))
    assert gen(torch.randn(1, 2, 16, 16, 8)).shape == (1, 3, 16, 16, 8)


def test_generator_rejects_bad_input():
    gen = MSCGenerator(features=(4, 8, 16))
    with pytest.raises(ValueError, match="expects input"):
        gen(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="expects input"):
        gen(torch.randn(1, 32, 32))
    with pytest.raises(ValueError, match="features"):
        MSCGenerator(features=(8,))


def test_generator_module_placement():
    gen = MSCGenerator(features=TINY)
    depth = len(TINY) - 1
    # scSE after every encoder stage and every decoder stage; CBAM on every skip; one MFE
    assert count(gen, SpatialChannelSE) == (depth + 1) + depth
    assert count(gen, CBAM) == depth
    assert count(gen, PyramidPoolingModule) == 1
    assert isinstance(gen.mfe, PyramidPoolingModule)
    assert all(isinstance(stage.skip_attention, CBAM) for stage in gen.decoder)


def test_generator_torchscript_matches_eager():
    torch.manual_seed(0)
    gen = MSCGenerator(features=TINY).eval()
    scripted = torch.jit.script(gen)
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), gen(x))
        ablated = MSCGenerator(features=(4, 8, 16), use_scse=False, use_mfe=False, use_cbam=False).eval()
        torch.testing.assert_close(torch.jit.script(ablated)(x), ablated(x))


def test_generator_overfits_one_slice():
    """A tiny-width generator must fit one disk-on-noise slice to Dice > 0.9 in at most 150 Adam steps."""
    torch.manual_seed(0)
    n = 64
    yy, xx = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    mask = (((yy - 30) ** 2 + (xx - 36) ** 2) <= 12**2).float()[None, None]
    image = 0.5 * mask + 0.3 * torch.rand(1, 1, n, n)
    gen = MSCGenerator(features=TINY)
    opt = torch.optim.Adam(gen.parameters(), lr=1e-3)
    dice = 0.0
    for _ in range(150):
        logits = gen(image)
        prob = torch.sigmoid(logits)
        soft_dice = (2 * (prob * mask).sum() + 1) / (prob.sum() + mask.sum() + 1)
        loss = 1 - soft_dice + F.binary_cross_entropy_with_logits(logits, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        pred = (logits.detach() > 0).float()
        dice = (2 * (pred * mask).sum() / (pred.sum() + mask.sum())).item()
        if dice > 0.9:
            break
    assert dice > 0.9


# ---------------------------------------------------------------- discriminator


def test_discriminator_patch_logits():
    torch.manual_seed(0)
    disc = PatchDiscriminator(image_channels=1, mask_channels=1, **TINY_DISC)
    assert count(disc, CBAM) == 4
    image, mask = torch.rand(2, 1, 64, 64), torch.rand(2, 1, 64, 64)
    y = disc(image, mask)
    assert y.shape == (2, 1, 6, 6)  # strides 2, 2, 2, 1 and a stride-1 head, k=4, pad=1
    assert not torch.allclose(y, disc(image, 1 - mask))  # the mask matters
    assert not torch.allclose(y, disc(torch.rand(2, 1, 64, 64), mask))  # so does the image
    assert count(PatchDiscriminator(use_cbam=False, **{**TINY_DISC, "channels": (4, 8)}, strides=(2, 1)), CBAM) == 0


def test_discriminator_accepts_concatenated_input():
    torch.manual_seed(0)
    disc = PatchDiscriminator(image_channels=1, mask_channels=2, **TINY_DISC).eval()
    image, mask = torch.rand(2, 1, 32, 32), torch.rand(2, 2, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(disc(torch.cat([image, mask], 1)), disc(image, mask))
    with pytest.raises(ValueError, match="concat"):
        disc(torch.rand(2, 2, 32, 32))


def test_discriminator_rejects_mismatched_inputs():
    disc = PatchDiscriminator(**TINY_DISC)
    with pytest.raises(ValueError, match="share"):
        disc(torch.rand(1, 1, 64, 64), torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="channels"):
        disc(torch.rand(1, 2, 64, 64), torch.rand(1, 1, 64, 64))


def test_discriminator_spectral_norm_and_script():
    torch.manual_seed(0)
    disc = PatchDiscriminator(spectral_norm=True, **TINY_DISC)
    convs = [m for m in disc.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (4, 4)]
    assert len(convs) == 5
    assert all(hasattr(m, "parametrizations") and "weight" in m.parametrizations for m in convs)
    assert disc(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)).shape == (1, 1, 2, 2)
    plain = PatchDiscriminator(**TINY_DISC).eval()
    image, mask = torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        scripted = torch.jit.script(plain)
        torch.testing.assert_close(scripted(image, mask), plain(image, mask))
        torch.testing.assert_close(scripted(torch.cat([image, mask], 1)), plain(image, mask))


# ---------------------------------------------------------------- variants


EXPECTED = {  # name: (scSE, MFE, CBAM in generator, discriminator)
    "MSCG": (True, True, True, True),
    "MSCG-Dis": (True, True, True, False),
    "SCG": (True, False, True, True),
    "MCG": (False, True, True, True),
    "MSG": (True, True, False, True),
}


def test_variant_table_is_the_papers_five():
    assert list(VARIANTS) == list(EXPECTED)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_variant_modules(name):
    scse, mfe, cbam, has_disc = EXPECTED[name]
    gen, disc = build_variant(name.lower(), features=TINY, discriminator_kwargs=TINY_DISC)
    assert isinstance(gen, MSCGenerator)
    assert (count(gen, SpatialChannelSE) > 0) == scse
    assert (count(gen, PyramidPoolingModule) > 0) == mfe
    assert (count(gen, CBAM) > 0) == cbam
    if has_disc:
        assert isinstance(disc, PatchDiscriminator)
        assert count(disc, CBAM) == len(TINY_DISC["channels"])  # discriminator identical across variants
    else:
        assert disc is None
    assert gen(torch.randn(1, 1, 32, 32)).shape == (1, 1, 32, 32)


def test_variant_names_and_errors():
    assert get_variant(" mscg-DIS ").name == "MSCG-Dis"
    with pytest.raises(ValueError, match="MSCG, MSCG-Dis, SCG, MCG, MSG"):
        build_variant("unet")
    with pytest.raises(ValueError, match="use_mfe"):
        build_variant("SCG", use_mfe=True)
    gen, disc = build_variant("MSG", in_channels=2, out_channels=3, features=(4, 8, 16), discriminator_kwargs=TINY_DISC)
    assert disc is not None and (disc.image_channels, disc.mask_channels) == (2, 3)
    assert disc(torch.rand(1, 2, 32, 32), torch.rand(1, 3, 32, 32)).shape == (1, 1, 2, 2)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    # Reduction 1 keeps the SE/CBAM bottlenecks as wide as their input: at tiny widths a
    # 1-2 unit ReLU bottleneck can be all-dead at init (channel means after norm+ReLU are
    # nearly equal), which would hide a real break in the gradient path behind noise.
    gen, disc = build_variant(
        "MSCG",
        features=TINY,
        scse_reduction=1,
        cbam_reduction=1,
        discriminator_kwargs={**TINY_DISC, "cbam_reduction": 1},
    )
    assert disc is not None
    image = torch.rand(2, 1, 64, 64)
    target = (torch.rand(2, 1, 64, 64) > 0.7).float()
    logits = gen(image)
    adversarial = F.binary_cross_entropy_with_logits(
        disc(image, torch.sigmoid(logits)), torch.ones(2, 1, 6, 6)
    )
    real = F.binary_cross_entropy_with_logits(disc(image, target), torch.ones(2, 1, 6, 6))
    loss = F.binary_cross_entropy_with_logits(logits, target) + 0.5 * adversarial + real
    loss.backward()
    for label, net in (("generator", gen), ("discriminator", disc)):
        for pname, param in net.named_parameters():
            assert param.grad is not None, f"{label}.{pname} got no gradient"
            assert param.grad.abs().sum() > 0, f"{label}.{pname} has an all-zero gradient"


def test_gradients_reach_every_parameter_default_width():
    """Paper widths and reductions: no attention bottleneck may start dead (see CBAM min_hidden)."""
    torch.manual_seed(0)
    gen, disc = build_variant("MSCG")
    assert disc is not None
    image = torch.rand(2, 1, 32, 32)
    target = (torch.rand(2, 1, 32, 32) > 0.7).float()
    logits = gen(image)
    loss = F.binary_cross_entropy_with_logits(logits, target) + disc(image, torch.sigmoid(logits)).mean()
    loss = loss + disc(image, target).mean()
    loss.backward()
    for label, net in (("generator", gen), ("discriminator", disc)):
        dead = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not dead, f"{label} parameters without gradient: {dead}"
