"""Losses and the adversarial trainer: definitions, gradients, unlabeled term, supervised-only variant."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceLoss

from pipeline.engines import AdversarialLoss, AdversarialSegTrainer, DiceBCELoss
from pipeline.engines.handlers import loss_terms
from pipeline.networks import build_variant

pytestmark = pytest.mark.usefixtures("single_thread")


def test_dice_exponent_matches_monai_squared_and_plain_dice():
    logits, target = torch.randn(3, 1, 12, 12), (torch.rand(3, 1, 12, 12) > 0.6).float()
    for p, squared in ((2, True), (1, False)):
        ours = DiceBCELoss(p=p, bce_weight=0.0, smooth=1e-5)(logits, target)
        ref = DiceLoss(sigmoid=True, squared_pred=squared, smooth_nr=1e-5, smooth_dr=1e-5)(logits, target)
        assert torch.allclose(ours, ref, atol=1e-6)
    with_bce = DiceBCELoss(p=2)(logits, target)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert torch.allclose(with_bce, DiceBCELoss(p=2, bce_weight=0.0)(logits, target) + bce, atol=1e-6)
    with pytest.raises(ValueError, match="exponent"):
        DiceBCELoss(p=0)


def test_dice_on_an_empty_reference_is_bounded_and_flattens_as_the_prediction_empties():
    target = torch.zeros(1, 1, 16, 16)
    grads = []
    for logit in (-2.0, -6.0, -10.0):
        logits = torch.full((1, 1, 16, 16), logit, requires_grad=True)
        DiceBCELoss(bce_weight=0.0)(logits, target).backward()
        grads.append(logits.grad.abs().max().item())
    assert grads[0] > grads[1] > grads[2]  # smooth=1: the push towards background fades
    assert grads[0] < 1.0
    # MONAI's smooth 1e-5 makes the same near-empty prediction pull hard (the collapse this default avoids)
    logits = torch.full((1, 1, 16, 16), -10.0, requires_grad=True)
    DiceBCELoss(bce_weight=0.0, smooth=1e-5)(logits, target).backward()
    assert logits.grad.abs().max().item() > 100 * grads[2]


def test_adversarial_terms_are_weighted_by_k_and_unlabeled_weight():
    fake, unl = torch.randn(2, 1, 5, 5), torch.randn(2, 1, 5, 5)
    bce_real = lambda x: torch.nn.functional.binary_cross_entropy_with_logits(x, torch.ones_like(x))  # noqa: E731
    loss = AdversarialLoss(k=0.5, unlabeled_weight=0.25)
    assert torch.allclose(loss.generator(fake), 0.5 * bce_real(fake))
    assert torch.allclose(loss.generator(fake, unl), 0.5 * bce_real(fake) + 0.5 * 0.25 * bce_real(unl))
    assert AdversarialLoss(k=0.0).generator(fake) == 0


def _batches(n: int, size: int = 32, labeled: bool = True) -> list[dict]:
    g = torch.Generator().manual_seed(n)
    out = []
    for _ in range(n):
        image = torch.rand(2, 1, size, size, generator=g)
        item = {"image": image}
        if labeled:
            item["label"] = (image > 0.7).float()
        out.append(item)
    return out


def _tiny(variant: str):
    # seeded: at such tiny widths an SE bottleneck of 4 units can start with every ReLU dead
    torch.manual_seed(0)
    return build_variant(variant, features=(8, 16, 32), discriminator_kwargs={"channels": (8, 16), "strides": (2, 1)})


def test_one_iteration_updates_every_generator_and_discriminator_parameter():
    gen, disc = _tiny("MSCG")
    before_g = [p.detach().clone() for p in gen.parameters()]
    before_d = [p.detach().clone() for p in disc.parameters()]
    trainer = AdversarialSegTrainer(
        "cpu", 1, _batches(1), gen, torch.optim.SGD(gen.parameters(), lr=0.1), disc,
        torch.optim.SGD(disc.parameters(), lr=0.1), unlabeled_data_loader=_batches(1, labeled=False))
    trainer.run()
    out = loss_terms(trainer.state.output)  # decollated per sample, like SupervisedTrainer
    assert out["adv_loss"] > 0 and out["d_loss"] > 0 and out["seg_loss"] > 0
    assert out["loss"] == pytest.approx(out["seg_loss"] + out["adv_loss"], rel=1e-5)
    changed_g = [not torch.equal(b, p) for b, p in zip(before_g, gen.parameters())]
    changed_d = [not torch.equal(b, p) for b, p in zip(before_d, disc.parameters())]
    assert all(changed_g) and all(changed_d)
    assert all(p.requires_grad for p in disc.parameters())


def test_unlabeled_loader_cycles_and_changes_the_generator_loss():
    gen, disc = _tiny("MSCG")
    state = {k: v.clone() for k, v in gen.state_dict().items()}
    dstate = {k: v.clone() for k, v in disc.state_dict().items()}
    losses = {}
    for name, unlabeled in (("without", None), ("with", _batches(1, labeled=False))):
        gen.load_state_dict(state)
        disc.load_state_dict(dstate)
        trainer = AdversarialSegTrainer("cpu", 1, _batches(3), gen, torch.optim.SGD(gen.parameters(), lr=0.0), disc,
                                        torch.optim.SGD(disc.parameters(), lr=0.0), unlabeled_data_loader=unlabeled)
        trainer.run()  # 3 labeled iterations, 1 unlabeled batch: the unlabeled loader must cycle
        losses[name] = loss_terms(trainer.state.output)["adv_loss"]
    assert losses["with"] > losses["without"]


def test_supervised_only_variant_and_bad_arguments():
    gen, disc = _tiny("MSCG-Dis")
    assert disc is None
    trainer = AdversarialSegTrainer("cpu", 1, _batches(2), gen, torch.optim.Adam(gen.parameters()))
    trainer.run()
    terms = loss_terms(trainer.state.output)
    assert terms["adv_loss"] == 0 and terms["d_loss"] == 0 and terms["loss"] == terms["seg_loss"] > 0
    with pytest.raises(ValueError, match="go together"):
        AdversarialSegTrainer("cpu", 1, _batches(1), gen, torch.optim.Adam(gen.parameters()), _tiny("MSCG")[1])
    trainer = AdversarialSegTrainer("cpu", 1, _batches(1, labeled=False), gen, torch.optim.Adam(gen.parameters()))
    with pytest.raises(ValueError, match="needs a 'label'"):
        trainer.run()
