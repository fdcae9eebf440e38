"""Semi-supervised adversarial training (Hung et al. 2018): confidence-masked self-training, discriminator
inputs without the soft/hard give-away, labeled-fraction split by patient, resume of the warm-up state."""

from __future__ import annotations

import copy

from pathlib import Path

import pytest
import torch
from ignite.engine import Events

from pipeline.data.datalists import segmentation_datalists
from pipeline.data.splits import labeled_patient_subset
from pipeline.engines import AdversarialSegTrainer, ConfidenceMaskedSelfTrainingLoss, DiscriminatorInput
from pipeline.engines.adversarial_trainer import confidence_map
from pipeline.engines.handlers import ResumeCheckpointLoader, TrainingCheckpointSaver, loss_terms
from pipeline.networks import build_variant

pytestmark = pytest.mark.usefixtures("single_thread")


# ----------------------------------------------------------------------------- self-training loss

def test_self_training_counts_only_pixels_above_the_confidence_threshold():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 6, 6, requires_grad=True)
    confidence = torch.rand(2, 1, 6, 6)
    confident = confidence > 0.4
    loss = ConfidenceMaskedSelfTrainingLoss(threshold=0.4)(logits, confidence)
    pseudo = (logits.detach() > 0).float()
    per_pixel = torch.nn.functional.binary_cross_entropy_with_logits(logits.detach(), pseudo, reduction="none")
    assert torch.allclose(loss, per_pixel[confident].mean())
    loss.backward()
    assert (logits.grad[~confident] == 0).all() and (logits.grad[confident] != 0).all()
    # nothing confident: zero loss, zero gradient (not NaN)
    logits.grad = None
    empty = ConfidenceMaskedSelfTrainingLoss(threshold=0.4)(logits, torch.full_like(confidence, 0.4))
    empty.backward()
    assert empty.item() == 0 and (logits.grad == 0).all()
    with pytest.raises(ValueError, match="T_semi"):
        ConfidenceMaskedSelfTrainingLoss(threshold=1.0)


def test_confidence_map_is_per_pixel_probability():
    conf = confidence_map(torch.zeros(2, 1, 5, 5), (20, 20))
    assert conf.shape == (2, 1, 20, 20) and torch.allclose(conf, torch.full_like(conf, 0.5))


# ----------------------------------------------------------------------------- trainer

def _batches(n: int, batch: int, size: int = 32, labeled: bool = True, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        image = torch.rand(batch, 1, size, size, generator=g)
        out.append({"image": image, "label": (image > 0.7).float()} if labeled else {"image": image})
    return out


def _tiny(variant: str = "MSCG"):
    torch.manual_seed(0)
    return build_variant(variant, features=(8, 16, 32), discriminator_kwargs={"channels": (8, 16), "strides": (2, 1)})


class _RecordingSelfTraining(ConfidenceMaskedSelfTrainingLoss):
    def __init__(self, threshold: float = 0.0):
        super().__init__(threshold)
        self.batch_sizes: list[int] = []

    def forward(self, logits, confidence):
        self.batch_sizes.append(logits.shape[0])
        return super().forward(logits, confidence)


def _trainer(gen, disc, epochs: int, labeled, unlabeled, **kwargs) -> AdversarialSegTrainer:
    return AdversarialSegTrainer(
        "cpu", epochs, labeled, gen, torch.optim.Adam(gen.parameters(), lr=1e-3), disc,
        torch.optim.Adam(disc.parameters(), lr=1e-3), unlabeled_data_loader=unlabeled, **kwargs)


def test_self_training_sees_only_unlabeled_slices_and_waits_for_the_warm_up():
    gen, disc = _tiny()
    semi = _RecordingSelfTraining(threshold=0.0)  # every pixel counts: the term is positive once active
    per_iteration = []
    trainer = _trainer(gen, disc, 3, _batches(1, batch=2), _batches(1, batch=3, labeled=False), semi_loss=semi,
                       lambda_semi=0.5, semi_warmup_iterations=2)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: per_iteration.append(loss_terms(e.state.output)))
    trainer.run()
    assert [o["semi_loss"] > 0 for o in per_iteration] == [False, False, True]
    assert semi.batch_sizes == [3]  # the 3 unlabeled slices, never the 2 labeled ones
    # the original formulation (lambda_semi=0) and a run without unlabeled slices never add it
    gen, disc = _tiny()
    plain = _trainer(gen, disc, 1, _batches(1, batch=2), _batches(1, batch=3, labeled=False))
    plain.run()
    assert loss_terms(plain.state.output)["semi_loss"] == 0
    gen, disc = _tiny()
    none = _trainer(gen, disc, 1, _batches(1, batch=2), None, lambda_semi=1.0)
    none.run()
    assert loss_terms(none.state.output)["semi_loss"] == 0


@pytest.mark.parametrize("mode", ["soft", "hard", "smoothed"])
def test_every_discriminator_input_passes_the_adversarial_gradient_to_the_generator(mode):
    torch.manual_seed(0)
    prob = torch.rand(2, 1, 16, 16, requires_grad=True)
    view = DiscriminatorInput(mode)
    fake = view.fake(prob)
    if mode == "hard":
        assert set(fake.detach().unique().tolist()) <= {0.0, 1.0}  # binary, like the references
    _, disc = _tiny()
    disc(torch.cat([torch.rand(2, 1, 16, 16), fake], 1)).mean().backward()
    assert prob.grad is not None and prob.grad.abs().sum() > 0
    # in the trainer, with the segmentation loss switched off, the adversarial term alone moves the generator
    gen, disc = _tiny()
    before = [p.detach().clone() for p in gen.parameters()]
    trainer = _trainer(gen, disc, 1, _batches(1, batch=2), None, disc_input=mode,
                       seg_loss=lambda logits, label: 0.0 * logits.sum())
    trainer.run()
    assert loss_terms(trainer.state.output)["seg_loss"] == 0
    assert any(not torch.equal(b, p) for b, p in zip(before, gen.parameters()))
    with pytest.raises(ValueError, match="disc_input"):
        DiscriminatorInput("binary")


def test_resume_restores_both_networks_both_optimizers_and_the_warm_up(tmp_path: Path):
    labeled, unlabeled = _batches(1, batch=2), _batches(1, batch=2, labeled=False)

    def build(epochs: int):
        gen, disc = _tiny()
        trainer = _trainer(gen, disc, epochs, labeled, unlabeled, lambda_semi=1.0, semi_warmup_iterations=2,
                           semi_loss=ConfidenceMaskedSelfTrainingLoss(threshold=0.0))
        objects = {"generator": gen, "discriminator": disc, "g_optimizer": trainer.g_optimizer,
                   "d_optimizer": trainer.d_optimizer}
        ResumeCheckpointLoader(str(tmp_path), objects).attach(trainer)
        TrainingCheckpointSaver(str(tmp_path), objects).attach(trainer)
        return trainer, objects

    first, saved = build(2)
    first.run()
    assert loss_terms(first.state.output)["semi_loss"] == 0  # still warming up at iteration 2
    second, loaded = build(3)
    restored = {}
    second.add_event_handler(Events.STARTED, lambda e: restored.update(
        iteration=e.state.iteration, objects={k: copy.deepcopy(v.state_dict()) for k, v in loaded.items()}))
    second.run()
    assert restored["iteration"] == 2
    for key in ("generator", "discriminator"):
        assert all(torch.equal(t, saved[key].state_dict()[n]) for n, t in restored["objects"][key].items())
    for key in ("g_optimizer", "d_optimizer"):
        steps = [float(s["step"]) for s in restored["objects"][key]["state"].values()]
        assert steps and set(steps) == {2.0}  # Adam moments of two steps, not a fresh optimizer
    assert loss_terms(second.state.output)["semi_loss"] > 0  # iteration 3: past the warm-up


# ----------------------------------------------------------------------------- labeled fraction

def _patients(n_per_center: dict[str, int]) -> list[dict]:
    return [{"patient_id": f"{c}_{i:02d}", "center": c} for c, n in n_per_center.items() for i in range(n)]


def test_labeled_subset_is_stratified_by_center_and_seeded():
    cases = _patients({"a": 20, "b": 10, "c": 2})
    keep = labeled_patient_subset(cases, 0.25, seed=3)
    per_center = {c: sum(p.startswith(c + "_") for p in keep) for c in "abc"}
    assert per_center == {"a": 5, "b": 2, "c": 1}  # round(0.25 n), at least one per center
    assert keep == labeled_patient_subset(list(reversed(cases)), 0.25, seed=3)  # order does not matter
    assert keep != labeled_patient_subset(cases, 0.25, seed=4)
    assert labeled_patient_subset(cases, 1.0) == {c["patient_id"] for c in cases}
    with pytest.raises(ValueError, match="labeled_fraction"):
        labeled_patient_subset(cases, 0.0)


def test_labeled_fraction_moves_the_other_training_patients_to_unlabeled(tiny_cohort: Path):
    full = segmentation_datalists(tiny_cohort, "t2", fold=0, n_folds=3, seed=0)
    scarce = segmentation_datalists(tiny_cohort, "t2", fold=0, n_folds=3, seed=0, labeled_fraction=0.5)
    train = {d["patient_id"] for d in scarce["train"]}
    moved = {d["patient_id"] for d in scarce["unlabeled"]} - {d["patient_id"] for d in full["unlabeled"]}
    assert train and moved and not train & moved
    assert train | moved == {d["patient_id"] for d in full["train"]}
    assert all("label" not in d for d in scarce["unlabeled"])
    assert scarce["validate"] == full["validate"]
    assert scarce == segmentation_datalists(tiny_cohort, "t2", fold=0, n_folds=3, seed=0, labeled_fraction=0.5)


def test_bundle_trains_one_semi_supervised_epoch_on_half_the_labels(tiny_cohort: Path, tmp_path: Path):
    from monai.bundle import run as run_bundle

    configs = Path(__file__).resolve().parents[2] / "bundles" / "dmg_mscg_segmentation" / "configs"
    run_bundle(config_file=str(configs / "train.json"), meta_file=str(configs / "metadata.json"),
               logging_file=str(configs / "logging.conf"), bundle_root=str(tmp_path),
               dataset_dir=str(tiny_cohort.parent), num_epochs=1, features=[4, 8, 16], disc_channels=[4, 8, 8, 16],
               spatial_size=32, num_workers=0, sw_batch_size=8, sequence="t2", variant="MSCG", fold=0, n_folds=3,
               labeled_fraction=0.5, disc_input="hard", lambda_semi=0.1, t_semi=0.0, semi_warmup_iterations=0)
    run = tmp_path / "runs" / "t2_MSCG_finetune_fold0"
    checkpoint = torch.load(run / "checkpoint_epoch=1.pt", weights_only=True)
    assert {"generator", "discriminator", "g_optimizer", "d_optimizer", "trainer"} <= set(checkpoint)
    assert checkpoint["trainer"]["iteration"] == checkpoint["trainer"]["epoch_length"] > 0
    assert (run / "model.pt").exists()
