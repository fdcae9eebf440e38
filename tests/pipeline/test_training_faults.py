"""Training state survives crashes and bad input: atomic checkpoints, fall-back resume, boolean --resume,
best score kept across a resume, a model.pt at the end of every run, one-line errors for bad weights."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine, Events

from pipeline.engines.handlers import (BestModelSaver, FinalModelFallback, PretrainedWeightsLoader,
                                       ResumeCheckpointLoader, TrainingCheckpointSaver, TrainingRunError, as_bool,
                                       latest_checkpoint, load_weights)

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "dmg_mscg_segmentation"
CONFIGS = BUNDLE / "configs"


def _engine(net: torch.nn.Module, opt: torch.optim.Optimizer) -> Engine:
    def step(engine, batch):
        opt.zero_grad()
        loss = net(torch.ones(1, 4)).sum()
        loss.backward()
        opt.step()
        return loss.item()

    return Engine(step)


def _run(folder: Path, epochs: int, resume: object = True, seed: int = 0) -> tuple[Engine, torch.nn.Module]:
    torch.manual_seed(seed)
    net = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    engine = _engine(net, opt)
    ResumeCheckpointLoader(str(folder), {"net": net, "opt": opt}, enabled=resume).attach(engine)
    TrainingCheckpointSaver(str(folder), {"net": net, "opt": opt}).attach(engine)
    engine.run(range(3), max_epochs=epochs)
    return engine, net


def test_checkpoint_write_is_atomic_and_the_old_one_survives_a_failed_write(tmp_path: Path, monkeypatch):
    _run(tmp_path, epochs=2)
    assert latest_checkpoint(tmp_path).endswith("checkpoint_epoch=2.pt")

    def killed(*args, **kwargs):  # the process dies between writing the temp file and renaming it
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, epochs=3)
    monkeypatch.undo()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoint_epoch=2.pt"], names  # old checkpoint kept, no temp file left
    assert torch.load(tmp_path / "checkpoint_epoch=2.pt", weights_only=True)["trainer"]["iteration"] == 6


_KILL_TARGET = textwrap.dedent("""
    import sys, torch
    from ignite.engine import Engine
    from pipeline.engines.handlers import ResumeCheckpointLoader, TrainingCheckpointSaver
    torch.set_num_threads(1)
    net = torch.nn.Linear(1000, 1000)  # 4 MB of state: saving takes a while
    engine = Engine(lambda e, b: 0.0)
    ResumeCheckpointLoader(sys.argv[1], {"net": net}).attach(engine)
    TrainingCheckpointSaver(sys.argv[1], {"net": net}).attach(engine)
    engine.run(range(1), max_epochs=100000)
""")


def test_sigkill_at_any_moment_leaves_a_readable_checkpoint(tmp_path: Path):
    script = tmp_path / "train.py"
    script.write_text(_KILL_TARGET)
    folder = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for delay in (0.05, 0.13, 0.29, 0.41):
        proc = subprocess.Popen([sys.executable, str(script), str(folder)], env=env)
        deadline = time.time() + 600  # a loaded CI machine may take long to import torch
        while latest_checkpoint(folder) is None and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert latest_checkpoint(folder) is not None, "the training process never saved a checkpoint"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        found = sorted(folder.glob("checkpoint_epoch=*.pt"))
        assert found, "all checkpoints lost"
        for path in found:  # every checkpoint under its final name is complete
            torch.load(path, weights_only=True)


def test_resume_falls_back_past_a_truncated_checkpoint_and_names_it(tmp_path: Path, caplog):
    net = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    engine = _engine(net, opt)
    TrainingCheckpointSaver(str(tmp_path), {"net": net, "opt": opt}, n_saved=2).attach(engine)
    engine.run(range(3), max_epochs=4)
    newest = tmp_path / "checkpoint_epoch=4.pt"
    newest.write_bytes(newest.read_bytes()[:200])  # truncated by a crash of the file system, say
    with caplog.at_level(logging.WARNING):
        engine, _ = _run(tmp_path, epochs=5)
    assert "checkpoint_epoch=4.pt" in caplog.text and "cannot load the weights" in caplog.text
    assert engine.state.epoch == 5 and engine.state.iteration == 15  # resumed at epoch 3, ran 4 and 5
    # the corrupt epoch-4 file was replaced by the rerun's own epoch 4, and only the newest is kept
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["checkpoint_epoch=4.pt", "checkpoint_epoch=5.pt"] \
        or sorted(p.name for p in tmp_path.glob("*.pt")) == ["checkpoint_epoch=5.pt"]
    for path in tmp_path.glob("*.pt"):
        torch.load(path, weights_only=True)


def test_saving_an_older_epoch_removes_newer_leftovers(tmp_path: Path):
    (tmp_path / "checkpoint_epoch=9.pt").write_bytes(b"corrupt")
    _run(tmp_path, epochs=1)
    assert [p.name for p in tmp_path.glob("*.pt")] == ["checkpoint_epoch=1.pt"]


@pytest.mark.parametrize("text,expected", [("false", False), ("False", False), ("0", False), ("no", False),
                                           ("true", True), ("True", True), ("1", True), (True, True),
                                           (False, False)])
def test_resume_flag_is_parsed_as_a_boolean(text, expected):
    assert as_bool(text, "resume") is expected


def test_resume_false_as_a_string_trains_from_scratch(tmp_path: Path):
    _run(tmp_path, epochs=2)
    engine, _ = _run(tmp_path, epochs=1, resume="false")
    assert engine.state.epoch == 1 and engine.state.iteration == 3
    assert [p.name for p in tmp_path.glob("*.pt")] == ["checkpoint_epoch=1.pt"]


def test_bad_resume_value_is_one_line():
    with pytest.raises(TrainingRunError, match="resume must be true or false, got 'maybe'"):
        as_bool("maybe", "resume")


def test_best_score_survives_a_resume(tmp_path: Path):
    net = torch.nn.Linear(4, 2)
    scores = iter([0.8, 0.5])
    validator = Engine(lambda e, b: None)

    @validator.on(Events.EPOCH_COMPLETED)
    def score(engine):
        engine.state.metrics["val_mean_dice"] = next(scores)

    model = tmp_path / "model.pt"
    saver = BestModelSaver(net, model)
    saver.attach(validator)
    validator.run([0])
    best_weights = model.read_bytes()
    restored = BestModelSaver(net, model)
    restored.load_state_dict(saver.state_dict())  # as a resumed run gets it from the training checkpoint
    with torch.no_grad():
        net.weight.add_(1.0)
    validator2 = Engine(lambda e, b: None)
    validator2.add_event_handler(Events.EPOCH_COMPLETED, score)
    restored.attach(validator2)
    validator2.run([0])
    assert restored.best == pytest.approx(0.8) and model.read_bytes() == best_weights


def test_run_without_validation_still_ends_with_a_model(tmp_path: Path, caplog):
    net = torch.nn.Linear(4, 2)
    engine = Engine(lambda e, b: None)
    FinalModelFallback(net, tmp_path / "model.pt").attach(engine)
    with caplog.at_level(logging.WARNING):
        engine.run([0], max_epochs=1)
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert torch.equal(state["weight"], net.weight) and "no validation ran" in caplog.text


def test_missing_or_mismatched_pretrained_weights_are_one_line(tmp_path: Path):
    net = torch.nn.Linear(4, 2)
    with pytest.raises(TrainingRunError, match=r"weight file .*missing\.pt does not exist"):
        load_weights(net, tmp_path / "missing.pt")
    torch.save(torch.nn.Linear(5, 2).state_dict(), tmp_path / "other.pt")
    with pytest.raises(TrainingRunError, match=r"other\.pt do not fit the network"):
        load_weights(net, tmp_path / "other.pt")
    (tmp_path / "pickle.pt").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(TrainingRunError, match=r"pickle\.pt: cannot load the weights") as info:
        load_weights(net, tmp_path / "pickle.pt")
    assert "weights_only=False" not in str(info.value)


def test_pretrained_loader_takes_a_training_checkpoint_generator_entry(tmp_path: Path):
    source = torch.nn.Linear(4, 2)
    torch.save({"generator": source.state_dict(), "trainer": {"epoch": 3}}, tmp_path / "ckpt.pt")
    net = torch.nn.Linear(4, 2)
    engine = Engine(lambda e, b: None)
    PretrainedWeightsLoader(net, tmp_path / "ckpt.pt").attach(engine)
    engine.run([0], max_epochs=1)
    assert torch.equal(net.weight, source.weight)


@pytest.mark.slow
def test_bundle_run_short_of_val_interval_writes_model_and_missing_weights_is_one_line(tiny_cohort: Path,
                                                                                      tmp_path: Path):
    common = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(CONFIGS / "train.json"),
              "--meta_file", str(CONFIGS / "metadata.json"), "--logging_file", str(CONFIGS / "logging.conf"),
              "--bundle_root", str(tmp_path), "--dataset_dir", str(tiny_cohort.parent),
              "--features", "[4,8,16]", "--disc_channels", "[4,8,8,16]", "--spatial_size", "32",
              "--num_workers", "0", "--n_folds", "3", "--variant", "MSCG-Dis", "--num_epochs", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*common, "--val_interval", "5", "--resume", "false"], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "runs" / "t2_MSCG-Dis_finetune_fold0" / "model.pt").is_file()
    failed = subprocess.run([*common, "--pretrained_ckpt", str(tmp_path / "nowhere.pt"), "--output_dir",
                             str(tmp_path / "other")], capture_output=True, text=True, env=env, timeout=600)
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr
    assert failed.stderr.strip().splitlines()[-1] == f"error: weight file {tmp_path / 'nowhere.pt'} does not exist"
