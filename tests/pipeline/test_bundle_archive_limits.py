"""Archive limits (zip bombs refused before anything is written) and pack's refusal of pickled weights."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

from pipeline.bundle_sharing import pack_bundle, unpack_bundle, verify_bundle
from pipeline.bundle_sharing.archive import ArchiveLimitError, ArchiveLimits, safe_extract
from pipeline.cli import main
from pipeline.networks import build_generator
from tests.helpers import copy_bundle

REPO = Path(__file__).resolve().parents[2]
SEG_BUNDLE = REPO / "bundles" / "dmg_mscg_segmentation"


def _bomb(path: Path, megabytes: int = 64) -> Path:
    """A bundle-shaped zip whose one weight file is ``megabytes`` of zeros (deflates ~1000:1)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("b/configs/metadata.json", "{}")
        with archive.open("b/models/model_t2.pt", "w", force_zip64=True) as member:
            for _ in range(megabytes):
                member.write(bytes(1 << 20))
    return path


def _left_behind(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".") or p.name == "out"]


def test_zip_bomb_is_refused_by_unpack_before_writing(tmp_path, capsys):
    bomb = _bomb(tmp_path / "bomb.zip")
    assert bomb.stat().st_size < 1e6
    assert main(["bundle", "unpack", str(bomb), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "member 'b/models/model_t2.pt' expands 67.1 MB" in err[0] and "limit 200" in err[0]
    assert _left_behind(tmp_path) == []


def test_zip_bomb_fails_verify(tmp_path):
    report = verify_bundle(_bomb(tmp_path / "bomb.zip"))
    (failure,) = report.failures
    assert failure.name == "archive" and "ratio" in failure.detail


@pytest.mark.parametrize("limits, message", [
    (ArchiveLimits(max_total_bytes=10_000_000, max_ratio=1e9), "expands to 67,108,866 bytes, more than the limit of 10,000,000 bytes"),
    (ArchiveLimits(max_members=1), "2 members, more than the limit of 1"),
])
def test_size_and_member_limits(tmp_path, limits, message):
    with pytest.raises(ArchiveLimitError, match=message):
        safe_extract(_bomb(tmp_path / "bomb.zip"), tmp_path / "out", limits=limits)
    assert _left_behind(tmp_path) == []


def test_a_member_whose_header_understates_its_size_writes_nothing(tmp_path):
    """The directory may lie about sizes: extraction stops at the declared size, fails the CRC, leaves nothing."""
    lying = tmp_path / "lying.zip"
    with zipfile.ZipFile(lying, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("b/configs/metadata.json", "{}")
        archive.writestr("b/models/model_t2.pt", bytes(300_000))
    data = lying.read_bytes()
    assert data.count((300_000).to_bytes(4, "little")) == 2  # local header and central directory
    lying.write_bytes(data.replace((300_000).to_bytes(4, "little"), (1000).to_bytes(4, "little")))
    with pytest.raises(ValueError, match="corrupt"):
        unpack_bundle(lying, tmp_path / "out")
    assert _left_behind(tmp_path) == []


def test_the_shipped_bundle_is_within_the_default_limits(tmp_path):
    root = copy_bundle(SEG_BUNDLE, tmp_path / "b")
    torch.save(build_generator("MSCG", features=[4, 8, 16]).state_dict(), root / "models" / "model_t2.pt")
    packed = pack_bundle(root, tmp_path / "b.zip").out
    assert unpack_bundle(packed, tmp_path / "unpacked").ok


class _Payload:  # a pickled object: torch.load(weights_only=True) refuses it
    def __reduce__(self):
        return (print, ("this ran at unpickling",))


def test_pack_refuses_weights_that_need_unpickling(tmp_path):
    root = copy_bundle(SEG_BUNDLE, tmp_path / "b")
    torch.save({"state_dict": {}, "extra": _Payload()}, root / "models" / "model_t2.pt")
    code = main(["bundle", "pack", str(root), "--out", str(tmp_path / "b.zip")])
    assert code == 2 and not (tmp_path / "b.zip").exists()


def test_pack_refusal_names_the_file(tmp_path):
    root = copy_bundle(SEG_BUNDLE, tmp_path / "b")
    torch.save({"extra": _Payload()}, root / "models" / "model_t2.pt")
    with pytest.raises(ValueError, match=r"model_t2.pt: refusing to pack weights that do not load with "
                                         r"torch.load\(weights_only=True\)"):
        pack_bundle(root, tmp_path / "b.zip")
