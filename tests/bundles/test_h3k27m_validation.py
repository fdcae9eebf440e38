"""train.json validates the H3K27M co-training with MONAI's engine (SupervisedEvaluator, metric handlers,
ValidationHandler, BestModelSaver): the same patient-level numbers as evaluate_status_model + status_summary,
and a resumed run keeps a better model.pt."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser
from monai.bundle import run as run_bundle

CONFIGS = Path(__file__).resolve().parents[2] / "bundles" / "h3k27m_classification" / "configs"
TINY = {"base_width": 8, "spatial_size": 64, "num_workers": 0, "batch_size": 8}

pytestmark = pytest.mark.usefixtures("single_thread")


def _parser(tiny_cohort: Path, root: Path, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    parser.update({"bundle_root": str(root), "dataset_dir": str(tiny_cohort.parent), **TINY, **overrides})
    return parser


@pytest.fixture(scope="module")
def two_sequence_cohort(tmp_path_factory) -> Path:
    from tests.helpers import write_tiny_cohort
    from tests.pipeline.test_multi_sequence_status import _add_t1c

    return _add_t1c(write_tiny_cohort(tmp_path_factory.mktemp("two_seq"), n_patients=6))


@pytest.mark.parametrize("config_name, extra_sequences, crop", [("full", [], 1.0), ("cls_only", [], 1.0),
                                                                ("full", ["t1c"], 0.5)])
def test_validation_metrics_are_the_patient_table_metrics(tiny_cohort: Path, two_sequence_cohort: Path, tmp_path: Path,
                                                          config_name: str, extra_sequences: list, crop: float):
    from pipeline.inference.status import evaluate_status_model, status_summary

    cohort = two_sequence_cohort if extra_sequences else tiny_cohort
    # every labelled patient validates (fold -1): 3 altered, 3 wild-type
    parser = _parser(cohort, tmp_path, fold=-1, validation_dir=str(cohort.parent), config_name=config_name,
                     min_tumour_pixels=5, extra_sequences=extra_sequences, center_crop_fraction=crop)
    torch.manual_seed(3)
    network = parser.get_parsed_content("network")
    evaluator = parser.get_parsed_content("validate#evaluator")
    evaluator.run()
    table, _ = evaluate_status_model(network, parser.get_parsed_content("validate#dataset"), sw_batch_size=16,
                                     min_tumour_pixels=5)
    assert len(table) == 6 and sorted(table.label) == [0, 0, 0, 1, 1, 1]
    assert network.encoder.resnet.conv1.in_channels == 1 + len(extra_sequences)
    expected = status_summary(table)
    assert set(expected) == {"accuracy", "sensitivity", "specificity", "auroc", "auprc", "dice"}
    assert 0 < expected["accuracy"] < 1 or config_name == "cls_only"  # not a trivial case
    for name, value in expected.items():
        got = float(evaluator.state.metrics[f"val_{name}"])
        if math.isnan(value):
            assert math.isnan(got), name
        else:
            assert got == pytest.approx(value, abs=1e-6), name


def test_a_resumed_run_keeps_the_better_model(tiny_cohort: Path, tmp_path: Path):
    def run(epochs: int) -> None:
        run_bundle(config_file=str(CONFIGS / "train.json"), meta_file=str(CONFIGS / "metadata.json"),
                   logging_file=str(CONFIGS / "logging.conf"), bundle_root=str(tmp_path),
                   dataset_dir=str(tiny_cohort.parent), n_folds=3, num_epochs=epochs, val_interval=1, **TINY)

    run(1)
    folder = tmp_path / "runs" / "full_fold0"
    model = (folder / "model.pt").read_bytes()
    checkpoint = torch.load(folder / "checkpoint_epoch=1.pt", weights_only=True)
    assert math.isfinite(float(checkpoint["validation"]["best"]))  # the best AUROC travels with the checkpoint
    checkpoint["validation"]["best"] = torch.tensor(1.0, dtype=torch.float64)  # no AUROC beats it
    torch.save(checkpoint, folder / "checkpoint_epoch=1.pt")
    run(2)
    assert (folder / "model.pt").read_bytes() == model  # the resumed run's validation did not replace it
    after = torch.load(folder / "checkpoint_epoch=2.pt", weights_only=True)
    assert float(after["validation"]["best"]) == 1.0
