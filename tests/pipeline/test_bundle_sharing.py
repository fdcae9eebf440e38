"""``dmg bundle pack / verify / unpack`` on a copy of the segmentation bundle with a tiny generator."""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import sys
import warnings
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.bundle_sharing import (
    CHECKSUMS_FILE,
    MANIFEST_FILE,
    UnsafeArchiveError,
    check_metadata,
    pack_bundle,
    parse_checksums,
    unpack_bundle,
    verify_bundle,
)
from pipeline.cli import main
from pipeline.inference import load_segmentation_model
from pipeline.networks import MSCGenerator, build_generator
from tests.helpers import ONE_NET_H3K27M, copy_bundle, h3k27m_net_keys

REPO = Path(__file__).resolve().parents[2]
SEG_BUNDLE = REPO / "bundles" / "dmg_mscg_segmentation"
H3_BUNDLE = REPO / "bundles" / "h3k27m_classification"
FEATURES = [4, 8, 16]
CARRIED = {p.relative_to(SEG_BUNDLE).as_posix() for p in (SEG_BUNDLE / "scripts").rglob("*")
           if p.is_file() and "__pycache__" not in p.parts}  # carried code and the reproduction scripts
CONFIGS = {f"configs/{p.name}" for p in (SEG_BUNDLE / "configs").iterdir() if p.is_file()}
DOCS = {f"docs/{p.name}" for p in (SEG_BUNDLE / "docs").iterdir() if p.is_file()}
SHIPPED = CARRIED | CONFIGS | DOCS | {"LICENSE", "models/model_t2.pt"}

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory) -> Path:
    """The segmentation bundle with a tiny MSCG generator as models/model_t2.pt (inference.json says its width),
    plus run outputs and clutter that must not be packed."""
    torch.set_num_threads(1)
    root = copy_bundle(SEG_BUNDLE, tmp_path_factory.mktemp("src") / "tiny_seg", features=FEATURES,
                        spatial_size=32, sw_batch_size=8)
    torch.manual_seed(0)
    torch.save(build_generator("MSCG", features=FEATURES).state_dict(), root / "models" / "model_t2.pt")
    for clutter in ("runs/t2_MSCG_finetune_fold0/model.pt", "eval/t2/val_mean_dice_raw.csv", "predictions/x_seg.nii.gz",
                    "configs/__pycache__/x.pyc", "models/.gitkeep", "models/model_t2.pt.tmp"):
        (root / clutter).parent.mkdir(parents=True, exist_ok=True)
        (root / clutter).write_bytes(b"not shipped")
    return root


@pytest.fixture(scope="module")
def packed(tiny_bundle: Path, tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("packed") / "tiny_seg.zip"
    result = pack_bundle(tiny_bundle, out, export_torchscript=True)
    assert result.models == {"t2": {"pytorch": "model_t2.pt", "torchscript": "model_t2.ts"}}
    return out


def _members(zip_path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(zip_path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def _rewrite(src: Path, dest: Path, change: dict[str, bytes] | None = None,
             extra: list[tuple[zipfile.ZipInfo | str, bytes]] = ()) -> Path:
    """Copy zip ``src`` to ``dest`` with some members' bytes replaced (valid CRCs) and ``extra`` members added."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name"
        with zipfile.ZipFile(dest, "w") as out:
            for name, data in _members(src).items():
                out.writestr(name, (change or {}).get(name, data))
            for info, data in extra:
                out.writestr(info, data)
    return dest


def _flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1:]


def test_pack_writes_configs_docs_weights_torchscript_and_checksums(packed: Path, tiny_bundle: Path):
    members = _members(packed)
    names = list(members)
    assert names == sorted(names), "member order is not deterministic"
    assert all(n.startswith("tiny_seg/") for n in names)
    files = {n.removeprefix("tiny_seg/"): data for n, data in members.items()}
    assert set(files) == SHIPPED | {"models/model_t2.ts", CHECKSUMS_FILE, MANIFEST_FILE}  # no runs/, eval/, clutter
    digests = parse_checksums(files[CHECKSUMS_FILE].decode())
    assert set(digests) == set(files) - {CHECKSUMS_FILE}
    assert all(hashlib.sha256(files[p]).hexdigest() == d for p, d in digests.items())
    manifest = json.loads(files[MANIFEST_FILE])
    meta = json.loads((SEG_BUNDLE / "configs" / "metadata.json").read_text())
    assert manifest["name"] == "DMG MSCG segmentation" and manifest["version"] == meta["version"]
    assert {f["path"]: f["size"] for f in manifest["files"]} == {
        p: len(d) for p, d in files.items() if p not in (CHECKSUMS_FILE, MANIFEST_FILE)}
    assert manifest["models"] == {"t2": {"pytorch": "models/model_t2.pt", "torchscript": "models/model_t2.ts"}}
    assert {"torch", "monai", "python"} <= set(manifest["packages"])
    assert not (tiny_bundle / "models" / "model_t2.ts").exists(), "pack must not modify the bundle folder"


def test_pack_is_reproducible_and_refuses_bad_metadata(tiny_bundle: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    a, b = pack_bundle(tiny_bundle, tmp_path / "a.zip").out, pack_bundle(tiny_bundle, tmp_path / "b.zip").out
    assert a.read_bytes() == b.read_bytes()
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundle / "configs", broken / "configs")
    meta = json.loads((broken / "configs" / "metadata.json").read_text())
    del meta["version"]
    (broken / "configs" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="missing: version"):
        pack_bundle(broken, tmp_path / "broken.zip")
    assert not (tmp_path / "broken.zip").exists() and not list(tmp_path.glob(".*.tmp"))


def test_verify_packed_zip_passes(packed: Path, capsys):
    assert main(["bundle", "verify", str(packed)]) == 0
    out = capsys.readouterr().out
    for row in ("archive", "checksums", "metadata: required keys", "metadata: MONAI version",
                "model t2: PyTorch in/out", "model t2: TorchScript in/out", "model t2: TorchScript vs PyTorch"):
        line = next(line for line in out.splitlines() if line.startswith(row + " "))
        assert " PASS " in line, line
    assert "thresholded masks identical" in out and "verified (" in out


def test_unpack_gives_the_same_files_and_checksums(packed: Path, tmp_path: Path, capsys):
    out = tmp_path / "unpacked"
    assert main(["bundle", "unpack", str(packed), "--out", str(out)]) == 0
    assert f"checksums: {len(SHIPPED) + 2} files match" in capsys.readouterr().out  # + .ts, bundle_manifest.json
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert files == {n.removeprefix("tiny_seg/"): d for n, d in _members(packed).items()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging folder left behind"
    with pytest.raises(ValueError, match="exists and is not an empty folder"):
        unpack_bundle(packed, out)


def test_tampered_weight_fails_verification_naming_the_file(packed: Path, tmp_path: Path, capsys):
    weights = "tiny_seg/models/model_t2.pt"
    data = _members(packed)[weights]
    # rewritten with a valid CRC: only the checksum manifest can tell
    tampered = _rewrite(packed, tmp_path / "tampered.zip", change={weights: _flip(data, len(data) // 2)})
    assert main(["bundle", "verify", str(tampered)]) == 1
    out = capsys.readouterr().out
    assert "models/model_t2.pt: checksum mismatch" in out and "verification FAILED" in out
    # a byte flipped in the zip itself: the zip's CRC catches it, naming the member
    raw = packed.read_bytes()
    at = raw.find(data[:64]) + len(data) // 2
    (tmp_path / "flipped.zip").write_bytes(_flip(raw, at))
    report = verify_bundle(tmp_path / "flipped.zip")
    assert not report.ok and report.failures[0].name == "archive" and weights in report.failures[0].detail
    # an unpacked folder: modified, missing and extra files are each named
    folder = unpack_bundle(packed, tmp_path / "folder").out
    pt = folder / "models" / "model_t2.pt"
    pt.write_bytes(_flip(pt.read_bytes(), len(data) // 2))
    (folder / "docs" / "README.md").unlink()
    (folder / "configs" / "extra.json").write_text("{}")
    detail = {c.name: c for c in verify_bundle(folder).checks}["checksums"]
    assert detail.status == "FAIL"
    assert "models/model_t2.pt: checksum mismatch" in detail.detail
    assert "docs/README.md: listed in the checksums but missing" in detail.detail
    assert "configs/extra.json: not listed in the checksums" in detail.detail


def _symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize("member, reason", [
    ("tiny_seg/../evil.txt", "'..' path component"),
    ("../evil.txt", "'..' path component"),
    ("/tmp/evil.txt", "absolute path"),
    (_symlink("tiny_seg/models/evil"), "symbolic link"),
    ("tiny_seg/configs/metadata.json", "duplicate of member"),
    ("tiny_seg/LICENSE/evil.txt", "is also a file"),
])
def test_unsafe_members_are_refused_before_anything_is_written(packed: Path, tmp_path: Path, member, reason, capsys):
    evil = _rewrite(packed, tmp_path / "evil.zip", extra=[(member, b"evil")])
    name = member.filename if isinstance(member, zipfile.ZipInfo) else member
    target = tmp_path / "work" / "bundle"
    assert main(["bundle", "unpack", str(evil), "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert f"refusing to extract member {name!r}" in err and reason in err
    assert not (tmp_path / "work").exists() and not (tmp_path / "evil.txt").exists()
    with pytest.raises(UnsafeArchiveError, match=reason):
        unpack_bundle(evil, target)
    report = verify_bundle(evil)
    assert [(c.name, c.status) for c in report.checks] == [("archive", "FAIL")] and reason in report.checks[0].detail


def test_torchscript_only_inference_needs_no_network_code(packed: Path, tiny_cohort: Path, tmp_path: Path,
                                                          monkeypatch):
    bundle = unpack_bundle(packed, tmp_path / "recipient").out
    (bundle / "models" / "model_t2.pt").unlink()

    def no_network_code(*args, **kwargs):
        raise AssertionError("a pipeline.networks network was built")

    monkeypatch.setattr(MSCGenerator, "__init__", no_network_code)
    monkeypatch.setitem(sys.modules, "pipeline.networks", None)  # as if the package's networks were absent
    with pytest.raises(ImportError):
        import pipeline.networks  # noqa: F401

    assert load_segmentation_model(bundle, "t2", device="cpu").kind == "torchscript"
    out = tmp_path / "pred"
    assert main(["segment", "--bundle", str(bundle), "--cohort", str(tiny_cohort), "--sequence", "t2",
                 "--out", str(out), "--device", "cpu"]) == 0
    for row in pd.read_csv(tiny_cohort).itertuples():
        image, mask = nib.load(tiny_cohort.parent / row.t2), nib.load(out / f"{row.patient_id}_t2_seg.nii.gz")
        assert mask.shape == image.shape
        np.testing.assert_allclose(mask.affine, image.affine, atol=1e-6)
        assert set(np.unique(np.asanyarray(mask.dataobj))) <= {0, 1}
    checks = {c.name: c for c in verify_bundle(bundle).checks}
    assert checks["model t2: TorchScript in/out"].status == "PASS"
    assert checks["model t2: TorchScript vs PyTorch"].status == "NOTE"
    assert "model t2: PyTorch loads" not in checks


def test_h3k27m_tensor_output_packs_with_a_torchscript_export(tmp_path: Path, capsys):
    from pipeline.networks import build_h3k27m_export_net

    root = copy_bundle(H3_BUNDLE, tmp_path / "h3", base_width=8, **ONE_NET_H3K27M)
    torch.manual_seed(0)
    size = json.loads((root / "configs" / "inference.json").read_text())["spatial_size"]
    net = build_h3k27m_export_net("full", base_width=8, img_size=size, **h3k27m_net_keys(root))
    torch.save(net.state_dict(), root / "models" / "model_t2.pt")
    assert main(["bundle", "pack", str(root), "--out", str(tmp_path / "h3.zip"), "--export-torchscript"]) == 0
    assert "no TorchScript export" not in capsys.readouterr().out
    report = verify_bundle(tmp_path / "h3.zip")
    checks = {c.name: c for c in report.checks}
    assert report.ok
    assert checks["model t2: PyTorch in/out"].status == "PASS"
    assert checks["model t2: TorchScript in/out"].status == "PASS"


def test_torchscript_that_disagrees_with_the_weights_fails(packed: Path, tmp_path: Path):
    bundle = unpack_bundle(packed, tmp_path / "b").out
    torch.manual_seed(1)  # not the packed generator's seed
    torch.jit.script(build_generator("MSCG", features=FEATURES).eval()).save(str(bundle / "models" / "model_t2.ts"))
    checks = {c.name: c for c in verify_bundle(bundle).checks}
    assert checks["model t2: TorchScript in/out"].status == "PASS"
    assert checks["model t2: TorchScript vs PyTorch"].status == "FAIL"
    assert "max |diff|" in checks["model t2: TorchScript vs PyTorch"].detail
    assert "models/model_t2.ts: checksum mismatch" in checks["checksums"].detail


def test_weights_that_do_not_fit_the_config_fail(packed: Path, tmp_path: Path):
    bundle = unpack_bundle(packed, tmp_path / "b").out
    config = bundle / "configs" / "inference.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "features": [8, 16, 32]}))
    checks = {c.name: c for c in verify_bundle(bundle).checks}
    assert checks["model t2: PyTorch loads"].status == "FAIL"
    assert "do not fit the bundle's network_def" in checks["model t2: PyTorch loads"].detail
    assert checks["checksums"].status == "FAIL" and "configs/inference.json" in checks["checksums"].detail


def test_metadata_checks():
    meta = json.loads((SEG_BUNDLE / "configs" / "metadata.json").read_text())
    installed = {"monai_version": meta["monai_version"], "pytorch_version": meta["pytorch_version"] + "+cpu"}
    assert {c.status for c in check_metadata(meta, installed)} == {"PASS"}
    older = {**meta, "monai_version": "1.3.0"}
    mismatch = {c.name: c for c in check_metadata(older, installed)}["metadata: MONAI version"]
    assert mismatch.status == "WARN" and "1.3.0" in mismatch.detail
    bad = {k: v for k, v in meta.items() if k not in ("task", "name")}
    bad["pytorch_version"] = "two point thirteen"
    bad["network_data_format"] = {"inputs": meta["network_data_format"]["inputs"], "outputs": {}}
    failed = {c.name: c.detail for c in check_metadata(bad, installed) if c.status == "FAIL"}
    assert failed["metadata: required keys"] == "missing: name, task"
    assert "pytorch_version='two point thirteen'" in failed["metadata: versions parse"]
    assert failed["metadata: network_data_format"] == "network_data_format.outputs: {} should be non-empty"
    bad["network_data_format"] = {"inputs": {"image": {"num_channels": "one", "spatial_shape": [160, 160]}}}
    failed = {c.name: c.detail for c in check_metadata(bad, installed) if c.status == "FAIL"}
    assert failed["metadata: network_data_format"] == ("network_data_format: 'outputs' is a required property; "
                                                       "network_data_format.inputs.image.num_channels: 'one' is not "
                                                       "of type 'integer'")


def test_verify_says_whether_monai_bundle_run_can_start(monkeypatch):
    import importlib.util

    from pipeline.bundle_sharing.metadata_checks import bundle_runner_check

    assert bundle_runner_check().status == "PASS"  # fire is a dependency of this package
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fire" else real(name, *a))
    missing = bundle_runner_check()
    assert missing.status == "WARN" and "pip install fire" in missing.detail
