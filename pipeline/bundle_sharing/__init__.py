"""Sharing trained bundles: ``dmg bundle pack`` / ``verify`` / ``unpack``.

* :mod:`.layout`: which files of a bundle folder are shipped; the weights under ``models/``;
* :mod:`.checksums`: the ``sha256sum``-format checksum manifest;
* :mod:`.archive`: deterministic atomic zip writing and a safe extraction (no member lands outside
  the target folder);
* :mod:`.metadata_checks`: offline checks of ``metadata.json``;
* :mod:`.model_checks`: the ``verify_net_in_out`` check on the shipped weights, TorchScript vs PyTorch;
* :mod:`.report`: the PASS/FAIL/WARN/NOTE table;
* :mod:`.signing`: Ed25519 signatures of the checksum manifest;
* :mod:`.pack`, :mod:`.unpack`, :mod:`.verify`, :mod:`.ship`: the operations.

They use the package below them: :mod:`pipeline.bundle_trust` (the config allow-list, ``logging.conf`` and the
carried code, checked before anything of a bundle runs) and :mod:`pipeline.inference`
(:mod:`pipeline.inference.bundle_models`: ``network_def`` for a weights file, TorchScript export; the ONNX export
and runtime).
"""

from pipeline.bundle_sharing.archive import CorruptArchiveError, UnsafeArchiveError, safe_extract, write_zip
from pipeline.bundle_sharing.checksums import ChecksumDiff, compare_checksums, format_checksums, parse_checksums
from pipeline.bundle_sharing.layout import CHECKSUMS_FILE, MANIFEST_FILE, ModelFiles, bundle_files, find_models
from pipeline.bundle_sharing.metadata_checks import REQUIRED_KEYS, check_metadata
from pipeline.bundle_sharing.pack import PackResult, pack_bundle
from pipeline.bundle_sharing.report import Check, VerifyReport
from pipeline.bundle_sharing.unpack import UnpackResult, unpack_bundle
from pipeline.bundle_sharing.verify import verify_bundle

__all__ = [
    "CHECKSUMS_FILE",
    "MANIFEST_FILE",
    "REQUIRED_KEYS",
    "Check",
    "ChecksumDiff",
    "CorruptArchiveError",
    "ModelFiles",
    "PackResult",
    "UnpackResult",
    "UnsafeArchiveError",
    "VerifyReport",
    "bundle_files",
    "check_metadata",
    "compare_checksums",
    "find_models",
    "format_checksums",
    "pack_bundle",
    "parse_checksums",
    "safe_extract",
    "unpack_bundle",
    "verify_bundle",
    "write_zip",
]
