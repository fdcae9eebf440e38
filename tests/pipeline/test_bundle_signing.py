"""Ed25519 signatures of a packed bundle: keygen, pack --sign, verify --trusted-key."""

from __future__ import annotations

import hashlib
import stat
import zipfile
from pathlib import Path

import pytest
import torch

from pipeline.bundle_sharing import verify_bundle
from pipeline.bundle_sharing.signing import generate_keypair, load_public_key
from pipeline.cli import main
from pipeline.networks import build_generator
from tests.helpers import copy_bundle

REPO = Path(__file__).resolve().parents[2]
SEG_BUNDLE = REPO / "bundles" / "dmg_mscg_segmentation"
FEATURES = [4, 8, 16]

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("keys")
    return {name: generate_keypair(root / name) for name in ("alice", "mallory")}


@pytest.fixture(scope="module")
def signed_zip(tmp_path_factory, keys) -> Path:
    root = copy_bundle(SEG_BUNDLE, tmp_path_factory.mktemp("src") / "tiny", features=FEATURES, spatial_size=32)
    torch.manual_seed(0)
    torch.save(build_generator("MSCG", features=FEATURES).state_dict(), root / "models" / "model_t2.pt")
    out = tmp_path_factory.mktemp("packed") / "tiny.zip"
    assert main(["bundle", "pack", str(root), "--out", str(out), "--sign", str(keys["alice"][0])]) == 0
    return out


def _signature_row(report):
    return next(c for c in report.checks if c.name == "signature")


def test_keygen_writes_a_private_key_only_its_owner_reads(keys):
    private, public = keys["alice"]
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in private.read_bytes() and b"PUBLIC KEY" in public.read_bytes()
    with pytest.raises(FileExistsError):
        generate_keypair(private.with_suffix(""))


def test_signed_by_a_trusted_key_passes(signed_zip, keys):
    report = verify_bundle(signed_zip, trusted_keys=[load_public_key(keys["alice"][1])])
    assert report.ok, report.table()
    assert _signature_row(report).status == "PASS"


def test_signed_by_another_key_fails(signed_zip, keys, capsys):
    code = main(["bundle", "verify", str(signed_zip), "--trusted-key", str(keys["mallory"][1])])
    out = capsys.readouterr().out
    assert code == 1 and "which is not a trusted key" in out


def test_without_trusted_key_the_signature_is_a_note(signed_zip):
    report = verify_bundle(signed_zip)
    assert report.ok and _signature_row(report).status == "NOTE"


def _rewrite(src: Path, dest: Path, edit) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, edit(info.filename, zin.read(info)))
    return dest


def test_tampered_bundle_with_recomputed_checksums_fails_the_signature(signed_zip, keys, tmp_path):
    """An attacker edits inference.json and fixes checksums.sha256: checksums pass, the signature does not."""
    with zipfile.ZipFile(signed_zip) as archive:
        config_name = next(n for n in archive.namelist() if n.endswith("configs/inference.json"))
        old_config = archive.read(config_name)
    new_config = old_config.replace(b'"threshold": 0.5', b'"threshold": 0.9')
    assert new_config != old_config
    old_digest, new_digest = (hashlib.sha256(c).hexdigest().encode() for c in (old_config, new_config))

    def edit(name: str, data: bytes) -> bytes:
        if name == config_name:
            return new_config
        return data.replace(old_digest, new_digest) if name.endswith("checksums.sha256") else data

    tampered = _rewrite(signed_zip, tmp_path / "tampered.zip", edit)
    report = verify_bundle(tampered, trusted_keys=[load_public_key(keys["alice"][1])])
    rows = {c.name: c for c in report.checks}
    assert rows["checksums"].status == "PASS"  # checksums alone cannot tell
    assert rows["signature"].status == "FAIL" and "bad signature" in rows["signature"].detail


def test_unsigned_bundle_fails_when_a_key_is_required(signed_zip, keys, tmp_path):
    unsigned = tmp_path / "unsigned.zip"
    with zipfile.ZipFile(signed_zip) as zin, zipfile.ZipFile(unsigned, "w") as zout:
        for info in zin.infolist():
            if not info.filename.endswith(".sig"):
                zout.writestr(info, zin.read(info))
    report = verify_bundle(unsigned, trusted_keys=[load_public_key(keys["alice"][1])])
    assert _signature_row(report).status == "FAIL" and "not signed" in _signature_row(report).detail


def test_a_bad_key_file_is_one_line(tmp_path, signed_zip, capsys):
    (tmp_path / "bad.pub").write_text("not a key")
    assert main(["bundle", "verify", str(signed_zip), "--trusted-key", str(tmp_path / "bad.pub")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.pub: not a PEM public key" in err[0]
