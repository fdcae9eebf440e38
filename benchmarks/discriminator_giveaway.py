"""Can the discriminator win without looking at the image? Its held-out accuracy with the generator frozen.

For each discriminator input (``soft``: today's sigmoid maps vs binary references; ``hard``: thresholded with a
straight-through gradient; ``smoothed``: same blur and noise on both) a fresh discriminator is trained for
``--steps`` steps to tell (image, reference) from (image, generated mask), the generator frozen, and its patch
accuracy is measured on slices of other patients. Two frozen generators:

* ``oracle soft``: a soft map whose 0.5-threshold is (up to the blur) the reference itself. A perfect segmentation;
  any accuracy above 0.5 is the give-away.
* ``trained``: a trained generator (``--model``), whose real mistakes a discriminator may legitimately find.

    nice -n 19 env OMP_NUM_THREADS=1 python -m benchmarks.discriminator_giveaway --train DATA/train \\
        --model RUNS/F1_MSCG-Dis_s0/model.pt --out RUNS/discriminator_giveaway.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from monai.networks.layers import GaussianFilter

from benchmarks.labeled_fraction import preprocessed_volumes, trained_generator, write_atomic
from pipeline.data.datalists import segmentation_datalists
from pipeline.engines import AdversarialLoss, DiscriminatorInput
from pipeline.engines.discriminator_inputs import DISC_INPUT_MODES
from pipeline.networks import PatchDiscriminator


def lesion_slices(volumes: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, 1, H, W)`` images and labels of every axial slice with a lesion."""
    images, labels = [], []
    for v in volumes:
        image, label = v["image"].as_tensor(), v["label"].as_tensor().float()
        for z in range(label.shape[-1]):
            if label[..., z].sum() > 0:
                images.append(image[..., z])
                labels.append(label[..., z])
    return torch.stack(images), torch.stack(labels)


def oracle_soft(labels: torch.Tensor) -> torch.Tensor:
    """A soft map thresholding (up to the blur) to the reference: a perfect generator's sigmoid output."""
    return torch.sigmoid(8.0 * (GaussianFilter(2, 1.0)(labels) - 0.5))


def discriminator_accuracy(mode: str, train: tuple, held_out: tuple, steps: int, batch: int = 8) -> float:
    """Held-out patch accuracy of a fresh discriminator trained ``steps`` steps on (image, reference, generated)."""
    torch.manual_seed(0)
    view, loss = DiscriminatorInput(mode), AdversarialLoss()
    disc = PatchDiscriminator(channels=(16, 32, 64, 128))
    optimizer = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.999))
    images, labels, probs = train
    for _ in range(steps):
        idx = torch.randint(0, images.shape[0], (batch,))
        x = images[idx]
        real = disc(torch.cat([x, view.real(labels[idx])], 1))
        fake = disc(torch.cat([x, view.fake(probs[idx])], 1))
        optimizer.zero_grad()
        loss.discriminator(real, fake).backward()
        optimizer.step()
    images, labels, probs = held_out
    with torch.no_grad():
        real = disc(torch.cat([images, view.real(labels)], 1))
        fake = disc(torch.cat([images, view.fake(probs)], 1))
    return 0.5 * ((real > 0).float().mean() + (fake < 0).float().mean()).item()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True, help="training cohort: fold-0 training patients train "
                        "the discriminator, fold-0 validation patients are the held-out batch")
    parser.add_argument("--model", type=Path, help="a trained generator's model.pt (without it: the oracle only)")
    parser.add_argument("--variant", default="MSCG-Dis")
    parser.add_argument("--sequence", default="t2")
    parser.add_argument("--spatial_size", type=int, default=96)
    parser.add_argument("--patients", type=int, default=12, help="training patients used for the discriminator")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", type=Path, required=True, help="markdown table to write")
    args = parser.parse_args(argv)

    lists = segmentation_datalists(args.train, args.sequence, fold=0, n_folds=5, seed=0)
    train = lesion_slices(preprocessed_volumes(lists["train"][: args.patients], args.spatial_size))
    held_out = lesion_slices(preprocessed_volumes(lists["validate"], args.spatial_size))
    frozen = {"oracle soft": (oracle_soft(train[1]), oracle_soft(held_out[1]))}
    if args.model is not None:
        generator = trained_generator(args.variant, args.model)
        with torch.no_grad():
            frozen["trained"] = (torch.sigmoid(generator(train[0])), torch.sigmoid(generator(held_out[0])))
    lines = [f"Discriminator patch accuracy on {held_out[0].shape[0]} held-out lesion slices after {args.steps} steps "
             f"on {train[0].shape[0]} training slices (0.5 = chance)\n", "| frozen generator | " +
             " | ".join(DISC_INPUT_MODES) + " |", "|---|" + "---|" * len(DISC_INPUT_MODES)]
    for name, (train_probs, held_probs) in frozen.items():
        accuracy = [discriminator_accuracy(mode, (*train, train_probs), (*held_out, held_probs), args.steps)
                    for mode in DISC_INPUT_MODES]
        lines.append(f"| {name} | " + " | ".join(f"{a:.3f}" for a in accuracy) + " |")
        print(lines[-1], flush=True)
    write_atomic(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
