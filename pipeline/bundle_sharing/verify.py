"""Verify a shared bundle, a folder or a zip: checksums, metadata, networks and TorchScript exports.

Checks, in order (each a row of the :class:`~pipeline.bundle_sharing.report.VerifyReport`):

1. ``archive`` (zip only): safe extraction to a temporary folder within size, member-count and ratio limits
   (see :func:`.archive.safe_extract`);
2. ``checksums``: every file against ``checksums.sha256``; missing, extra and modified files are named
   (a zip must have the file; a folder without one gets a NOTE); ``manifest``: ``bundle_manifest.json``
   agrees with the metadata;
   ``signature``: ``checksums.sha256.sig`` against ``--trusted-key`` public keys (:mod:`.signing`);
   ``configs``: the config allow-list, ``logging.conf`` and carried code (:mod:`pipeline.bundle_trust.trust`;
   parsed, never evaluated): on a FAIL nothing below runs, since building ``network_def`` would run the configs;
3. ``metadata: ...``: :func:`.metadata_checks.check_metadata`; ``monai.bundle run``: whether ``fire`` (which
   MONAI's bundle command line needs) is installed, :func:`.metadata_checks.bundle_runner_check`;
4. per ``models/model_<name>.pt``: ``network_def`` of ``inference.json`` for that name loads the weights
   (``weights_only=True``, strict) and passes the ``verify_net_in_out`` check (``n`` for ``"16*n"`` shapes);
5. per TorchScript model: it loads with ``torch.jit.load`` alone, passes the same check, and agrees with the
   PyTorch model on a fixed random batch (seed 0): max abs difference <= ``atol`` and identical thresholded
   masks. A ``.pt`` without TorchScript export gets a NOTE ("no TorchScript model"), not a failure.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pipeline.bundle_sharing.archive import ArchiveLimits, safe_extract
from pipeline.bundle_sharing.checksums import compare_checksums, parse_checksums
from pipeline.bundle_sharing.layout import CHECKSUMS_FILE, MANIFEST_FILE, bundle_files, find_models
from pipeline.bundle_sharing.metadata_checks import bundle_runner_check, check_metadata
from pipeline.bundle_sharing.model_checks import IOSpec, check_in_out, compare_outputs
from pipeline.bundle_sharing.onnx_check import check_onnx_models
from pipeline.bundle_sharing.report import VerifyReport
from pipeline.bundle_sharing.signing import SIGNATURE_FILE, SignatureError, check_signature
from pipeline.bundle_trust.trust import bundle_code_problems, use_bundle_code
from pipeline.inference.bundle_models import load_pytorch_model, metadata_of, read_inference_config

__all__ = ["verify_bundle"]


def verify_bundle(path: str | os.PathLike, n: int = 2, compare_n: int = 4, atol: float = 1e-4,
                  trusted_keys: Sequence[Ed25519PublicKey] = (), limits: ArchiveLimits | None = None) -> VerifyReport:
    """Verify the bundle folder or bundle zip at ``path`` (see the module docstring); never raises for a bad
    bundle, only for a path that does not exist. ``trusted_keys``: public keys one of which must have signed
    the checksums; ``limits``: what the zip may expand to."""
    path = Path(path)
    report = VerifyReport(str(path))
    if path.is_dir():
        _verify_folder(path, report, require_checksums=False, n=n, compare_n=compare_n, atol=atol,
                       trusted=trusted_keys)
        return report
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    with tempfile.TemporaryDirectory(prefix="dmg_bundle_verify_") as tmp:
        root = Path(tmp) / "bundle"
        try:
            files = safe_extract(path, root, limits=limits)
        except ValueError as exc:  # unsafe, corrupt, not a zip, not a bundle
            report.add("archive", "FAIL", str(exc))
            return report
        report.add("archive", "PASS", f"{len(files)} files, all members safe and intact")
        _verify_folder(root, report, require_checksums=True, n=n, compare_n=compare_n, atol=atol,
                       trusted=trusted_keys)
    return report


def _verify_checksums(root: Path, report: VerifyReport, require: bool) -> None:
    listing = root / CHECKSUMS_FILE
    if not listing.is_file():
        report.add("checksums", "FAIL" if require else "NOTE",
                   f"no {CHECKSUMS_FILE}" + ("" if require else " (not a packed bundle); files not checked"))
        return
    try:
        expected = parse_checksums(listing.read_text(encoding="utf-8"), CHECKSUMS_FILE)
    except (ValueError, UnicodeDecodeError) as exc:
        report.add("checksums", "FAIL", str(exc))
        return
    present = bundle_files(root) + ([MANIFEST_FILE] if (root / MANIFEST_FILE).is_file() else [])
    diff = compare_checksums(root, expected, present)
    if diff.ok:
        report.add("checksums", "PASS", f"{diff.matched} files match {CHECKSUMS_FILE}")
    else:
        report.add("checksums", "FAIL", "\n".join(diff.problems()))


def _verify_manifest(root: Path, meta: dict, report: VerifyReport) -> None:
    path = root / MANIFEST_FILE
    if not path.is_file():
        return
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        name, version = manifest.get("name"), manifest.get("version")
    except (ValueError, UnicodeDecodeError, AttributeError) as exc:
        report.add("manifest", "FAIL", f"{MANIFEST_FILE} is not a valid JSON object: {exc}")
        return
    if (name, version) != (meta.get("name"), meta.get("version")):
        report.add("manifest", "FAIL", f"{MANIFEST_FILE} says {name!r} {version!r}, metadata.json says "
                                       f"{meta.get('name')!r} {meta.get('version')!r}")
    else:
        report.add("manifest", "PASS", f"{name} {version}, packed {manifest.get('created', '?')}")


def _verify_signature(root: Path, report: VerifyReport, trusted: Sequence[Ed25519PublicKey]) -> None:
    signature, listing = root / SIGNATURE_FILE, root / CHECKSUMS_FILE
    if not signature.is_file():
        if trusted:
            report.add("signature", "FAIL", f"not signed (no {SIGNATURE_FILE}), but --trusted-key was given")
        else:
            report.add("signature", "NOTE", "not signed: checksums catch corruption, not tampering")
        return
    if not trusted:
        report.add("signature", "NOTE", f"{SIGNATURE_FILE} present but not checked (give --trusted-key PUB)")
        return
    if not listing.is_file():
        report.add("signature", "FAIL", f"{SIGNATURE_FILE} without {CHECKSUMS_FILE}")
        return
    try:
        signer = check_signature(listing.read_bytes(), signature.read_bytes(), trusted)
    except SignatureError as exc:
        report.add("signature", "FAIL", str(exc))
    else:
        report.add("signature", "PASS", f"{CHECKSUMS_FILE} signed by trusted key {signer} (Ed25519)")


def _verify_code(root: Path, report: VerifyReport) -> bool:
    """The config allow-list, logging.conf and carried code (nothing evaluated); False stops the model checks,
    which would instantiate the configs."""
    problems = bundle_code_problems(root)
    if problems:
        report.add("configs: no code outside the allow-list", "FAIL", "\n".join(problems))
        report.add("models", "NOTE", "not checked: building network_def would run the refused configs")
        return False
    report.add("configs: no code outside the allow-list", "PASS",
               "every $-expression, _target_ and logging.conf entry is wiring; carried code is this package's")
    return True


def _verify_folder(root: Path, report: VerifyReport, require_checksums: bool, n: int, compare_n: int,
                   atol: float, trusted: Sequence[Ed25519PublicKey] = ()) -> None:
    _verify_checksums(root, report, require_checksums)
    _verify_signature(root, report, trusted)
    if not _verify_code(root, report):
        return
    with use_bundle_code(root):
        _verify_contents(root, report, n, compare_n, atol)


def _verify_contents(root: Path, report: VerifyReport, n: int, compare_n: int, atol: float) -> None:
    try:
        meta = metadata_of(root)
    except (FileNotFoundError, ValueError) as exc:
        report.add("metadata", "FAIL", str(exc))
        return
    _verify_manifest(root, meta, report)
    report.extend(check_metadata(meta))
    report.extend([bundle_runner_check()])
    try:
        spec = IOSpec.from_metadata(meta)
    except (KeyError, TypeError, ValueError, StopIteration, AttributeError) as exc:
        report.add("models", "FAIL", f"cannot check the models: unusable network_data_format ({exc!r})")
        return
    models = find_models(root)
    if not models:
        report.add("models", "NOTE", "no weights in models/ (configs only)")
        return
    threshold = _threshold(root)
    for name, files in models.items():
        eager = None
        if files.pytorch is not None:
            try:
                eager = load_pytorch_model(root, name, files.pytorch)
            except Exception as exc:  # a config that does not build, weights that do not load or fit
                report.add(f"model {name}: PyTorch loads", "FAIL", _relative(f"{type(exc).__name__}: {exc}", root))
            else:
                report.add(f"model {name}: PyTorch loads", "PASS", f"{files.pytorch.name} into network_def")
                report.checks.append(check_in_out(eager, spec, n=n, label=f"model {name}: PyTorch in/out"))
        if files.torchscript is None:
            report.add(f"model {name}: TorchScript", "NOTE",
                       f"no TorchScript model (models/model_{name}.ts): recipients need this package's networks")
            continue
        try:
            scripted = torch.jit.load(str(files.torchscript), map_location="cpu").eval()
        except Exception as exc:
            report.add(f"model {name}: TorchScript loads", "FAIL",
                       _relative(f"{files.torchscript.name}: {type(exc).__name__}: {str(exc)[:300]}", root))
            continue
        report.add(f"model {name}: TorchScript loads", "PASS", f"{files.torchscript.name} with torch.jit.load")
        report.checks.append(check_in_out(scripted, spec, n=n, label=f"model {name}: TorchScript in/out"))
        if eager is not None:
            x = spec.input(batch=2, n=compare_n, seed=0)
            report.checks.append(compare_outputs(eager, scripted, x, spec.output_key, threshold, atol,
                                                 label=f"model {name}: TorchScript vs PyTorch"))
        elif files.pytorch is None:
            report.add(f"model {name}: TorchScript vs PyTorch", "NOTE", "TorchScript only; nothing to compare with")
    report.extend(check_onnx_models(root, threshold=threshold, atol=atol))


def _relative(text: str, root: Path) -> str:
    """Messages name files relative to the bundle (a zip is verified in a temporary folder)."""
    return text.replace(str(root) + os.sep, "")


def _threshold(root: Path) -> float:
    try:
        value = read_inference_config(root).get("threshold", 0.5)
        return float(value) if isinstance(value, (int, float)) else 0.5
    except Exception:
        return 0.5
