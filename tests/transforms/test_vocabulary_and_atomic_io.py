"""The shared vocabulary (sequences, statuses, prediction naming) and the one atomic-write implementation."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest

from transforms import atomic_writer
from transforms.atomic_writer import AtomicNibabelWriter, atomic_write_bytes
from transforms.vocabulary import (SEQUENCES, STATUS_NAMES, nifti_stem, prediction_file_name,
                                   prediction_sequence)


def test_prediction_naming_round_trips():
    assert prediction_file_name("p1", "t2") == "p1_t2_seg.nii.gz"
    for seq in SEQUENCES:
        assert prediction_sequence(f"/x/p_10_{seq}_seg.nii.gz") == seq
    assert prediction_sequence("p1_t2.nii.gz") is None and prediction_sequence("p1_t2_seg.nii") is None
    assert nifti_stem("/a/p1_t2_seg.nii.gz") == "p1_t2_seg" and nifti_stem("b.nii") == "b"
    assert nifti_stem("/dicom/patient.01") == "patient.01"  # a DICOM series folder keeps its whole name
    assert STATUS_NAMES == {0: "wild-type", 1: "altered"}


def test_the_cli_offers_the_vocabulary_sequences():
    from pipeline.cli import build_parser

    parser = build_parser()
    for command in ("segment", "evaluate"):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--sequence", "t1"])
    assert parser.parse_args(["evaluate", "--pred", "p", "--out", "o", "--sequence", SEQUENCES[-1]]).sequence == ["flair"]


def test_atomic_writes_reach_the_disk_before_the_rename(tmp_path, monkeypatch):
    """Both the byte writer and the NIfTI writer fsync the temp file, then rename, then fsync the folder."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(atomic_writer.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(atomic_writer.os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    atomic_write_bytes(tmp_path / "a.txt", b"x")
    assert events == ["fsync", "replace", "fsync"]
    events.clear()
    writer = AtomicNibabelWriter()
    writer.set_data_array(np.ones((4, 4, 2), np.uint8), channel_dim=None)
    writer.set_metadata({"affine": np.eye(4), "original_affine": np.eye(4)}, resample=False)
    writer.write(tmp_path / "m_t2_seg.nii.gz")
    assert events == ["fsync", "replace", "fsync"]
    assert nib.load(tmp_path / "m_t2_seg.nii.gz").get_fdata().sum() == 32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "m_t2_seg.nii.gz"]


def test_a_failed_nifti_write_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "m_t2_seg.nii.gz"
    target.write_bytes(b"old")

    def full(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic_writer.os, "replace", full)
    writer = AtomicNibabelWriter()
    writer.set_data_array(np.ones((4, 4, 2), np.uint8), channel_dim=None)
    writer.set_metadata({"affine": np.eye(4)}, resample=False)
    with pytest.raises(OSError, match=str(target)):
        writer.write(target)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == [target.name]
