"""Pack a bundle folder into a zip to share: configs, docs, LICENSE, weights, TorchScript models, a checksum
manifest (``checksums.sha256``) and ``bundle_manifest.json`` (what is inside, and with which packages).

The zip has one top folder named after the bundle folder, members in sorted order with fixed timestamps,
and is written atomically. The metadata is checked first (a FAIL of :func:`.metadata_checks.check_metadata`
refuses to pack), then the weights (every ``models/*.pt`` must load with ``weights_only=True`` or be a
TorchScript archive) and the configs (:mod:`pipeline.bundle_trust.trust`: the config allow-list, ``logging.conf``,
carried code). ``export_torchscript=True`` adds ``models/model_<name>.ts`` for every
``models/model_<name>.pt`` that has none (``torch.jit.script`` of the inference config's ``network_def``);
a network that cannot be scripted is reported as a note and packed without one. The bundle folder
itself is not modified.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import tempfile
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pipeline.bundle_sharing.archive import write_zip
from pipeline.bundle_sharing.checksums import format_checksums
from pipeline.bundle_sharing.layout import (
    CHECKSUMS_FILE,
    MANIFEST_FILE,
    MODEL_NAME,
    SIGNATURE_FILE,
    bundle_files,
    find_models,
)
from pipeline.bundle_sharing.metadata_checks import check_metadata
from pipeline.bundle_sharing.signing import key_id, sign_checksums
from pipeline.bundle_trust.trust import bundle_code_problems, use_bundle_code
from pipeline.checkpoint_io import model_file_kind, read_checkpoint, sha256_file
from pipeline.inference.bundle_models import export_torchscript as script_and_save
from pipeline.inference.bundle_models import metadata_of

__all__ = ["PackResult", "pack_bundle", "package_versions"]

FORMAT = "dmg-bundle/1"


@dataclass
class PackResult:
    """What :func:`pack_bundle` wrote."""

    out: Path
    name: str
    version: str
    files: dict[str, int]
    models: dict[str, dict[str, str]]
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        size = self.out.stat().st_size
        head = (f"packed '{self.name}' {self.version}: {len(self.files)} files + {MANIFEST_FILE}, "
                f"{CHECKSUMS_FILE} -> {self.out} ({size / 1e6:.2f} MB)")
        lines = [head]
        for name, kinds in self.models.items():
            lines.append(f"  model {name}: {', '.join(kinds.values())}")
        if not self.models:
            lines.append("  no weights in models/ (configs only)")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in ("dmg-pipeline", "torch", "monai", "numpy", "pytorch-ignite", "nibabel"):
        try:
            versions[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def _created() -> str:
    """Now (UTC), or ``SOURCE_DATE_EPOCH`` when set, for reproducible archives."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = dt.datetime.fromtimestamp(int(epoch), dt.UTC) if epoch else dt.datetime.now(dt.UTC)
    return when.replace(microsecond=0).isoformat()


def check_weights_only(bundle: Path, files: list[str]) -> None:
    """Refuse (``ValueError`` naming the file) any ``models/*.pt``/``*.pth`` that is not a TorchScript archive
    and does not load with ``torch.load(weights_only=True)``: a recipient would have to unpickle it, which can
    run code."""
    for rel in files:
        if not (rel.startswith("models/") and rel.endswith((".pt", ".pth"))):
            continue
        path = bundle / rel
        if model_file_kind(path) == "torchscript":
            continue
        try:
            read_checkpoint(path)
        except ValueError as exc:
            first = " ".join(str(exc.__cause__ or exc).split())[:200]
            raise ValueError(f"{path}: refusing to pack weights that do not load with torch.load(weights_only=True) "
                             f"(a recipient would have to unpickle them, which can run code): {first}") from None


def pack_bundle(bundle_dir: str | os.PathLike, out: str | os.PathLike, export_torchscript: bool = False,
                sign_key: Ed25519PrivateKey | None = None) -> PackResult:
    """Write the bundle in ``bundle_dir`` to the zip ``out`` (see the module docstring). ``sign_key`` adds
    ``checksums.sha256.sig`` (:mod:`.signing`). Nothing is written when a check fails."""
    bundle, out = Path(bundle_dir), Path(out)
    if not bundle.is_dir():
        raise NotADirectoryError(f"bundle folder {bundle} does not exist")
    meta = metadata_of(bundle)
    failed = [c for c in check_metadata(meta) if c.status == "FAIL"]
    if failed:
        raise ValueError(f"{bundle / 'configs' / 'metadata.json'} is not valid: "
                         + "; ".join(f"{c.name}: {c.detail}" for c in failed))
    if not (bundle / "configs" / "inference.json").is_file():
        raise FileNotFoundError(f"bundle config {bundle / 'configs' / 'inference.json'} does not exist")
    out_resolved = out.resolve()
    sources: dict[str, Path | bytes] = {rel: bundle / rel for rel in bundle_files(bundle)
                                        if (bundle / rel).resolve() != out_resolved}
    check_weights_only(bundle, list(sources))
    problems = bundle_code_problems(bundle)
    if problems:
        raise ValueError(f"refusing to pack {bundle}: {problems[0]}")
    notes = [f"no {rel}" for rel in ("LICENSE", "docs/README.md") if rel not in sources]
    with tempfile.TemporaryDirectory(prefix="dmg_bundle_pack_") as tmp:
        if export_torchscript:
            for name, files in find_models(bundle).items():
                if files.pytorch is None or files.torchscript is not None:
                    continue
                target = Path(tmp) / f"model_{name}.ts"
                try:
                    with use_bundle_code(bundle):
                        script_and_save(bundle, name, files.pytorch, target, metadata=meta)
                except Exception as exc:  # e.g. a network TorchScript cannot compile
                    first = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())[:240]
                    notes.append(f"model {name}: no TorchScript export ({type(exc).__name__}: {first})")
                else:
                    sources[f"models/model_{name}.ts"] = target
        digests = {rel: sha256_file(src) for rel, src in sources.items()}
        sizes = {rel: src.stat().st_size for rel, src in sources.items()}
        models: dict[str, dict[str, str]] = {}
        for rel in sorted(sources):
            match = MODEL_NAME.match(rel.removeprefix("models/")) if rel.count("/") == 1 else None
            if rel.startswith("models/") and match:
                models.setdefault(match["name"], {})["pytorch" if match["ext"] == "pt" else "torchscript"] = rel
        manifest = {
            "format": FORMAT,
            "name": meta.get("name"),
            "version": meta.get("version"),
            "bundle_folder": bundle.resolve().name,
            "created": _created(),
            "files": [{"path": rel, "size": sizes[rel], "sha256": digests[rel]} for rel in sorted(sources)],
            "models": models,
            "packages": package_versions(),
        }
        manifest_bytes = (json.dumps(manifest, indent=2) + "\n").encode()
        sources[MANIFEST_FILE] = manifest_bytes
        digests[MANIFEST_FILE] = hashlib.sha256(manifest_bytes).hexdigest()
        sources[CHECKSUMS_FILE] = format_checksums(digests).encode()
        if sign_key is not None:
            sources[SIGNATURE_FILE] = sign_checksums(sources[CHECKSUMS_FILE], sign_key)
            notes.append(f"signed with Ed25519 key {key_id(sign_key.public_key())}")
        write_zip(out, sources, prefix=bundle.resolve().name + "/")
    return PackResult(out=out, name=str(meta.get("name")), version=str(meta.get("version")), files=sizes,
                      models={k: {kind: Path(p).name for kind, p in v.items()} for k, v in models.items()},
                      notes=notes)
