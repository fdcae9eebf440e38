"""``dmg bundle ship BUNDLE_DIR``: regenerate everything in a bundle folder that derives from its weights and
from this package's code, so the folder passes the MONAI Model Zoo's checks and runs with MONAI alone.

Re-run it whenever ``models/model_<name>.pt`` or the carried source modules change. In order:

1. the carried code in ``scripts/`` (:mod:`pipeline.bundle_trust.carried_code`),
   when ``configs/inference.json`` names ``scripts.``;
2. every ``configs/*.json`` rewritten as the zoo's pre-commit ``pretty-format-json --indent=4 --no-sort-keys``
   writes it (same content, only the layout changes);
3. for every ``models/model_<name>.pt``: ``models/model_<name>.ts`` (``torch.jit.script`` of the inference
   config's ``network_def`` with the weights, the current ``metadata.json`` and ``inference.json`` embedded,
   as ``monai.bundle ckpt_export`` saves it);
4. ``models/model.pt`` and ``models/model.ts``, the zoo's default model: a copy of ``model_<default>.pt`` and its
   export, where ``default`` is the inference config's ``sequence`` (``t2`` in the segmentation bundle);
5. ``models/model_<name>.onnx`` for ``dmg segment`` on CPU (``pipeline.inference.onnx_export``).

Every file is written to a temporary name and renamed into place. Nothing is done for a bundle without
weights beyond steps 1 and 2.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.bundle_sharing.layout import find_models
from pipeline.bundle_trust.carried_code import write_carried_code
from pipeline.bundle_trust.trust import bundle_code_problems, use_bundle_code
from pipeline.inference.bundle_models import export_torchscript, metadata_of, read_inference_config
from transforms.atomic_writer import atomic_path, atomic_write_text

__all__ = ["DEFAULT_MODEL", "ShipResult", "pretty_format_json", "ship_bundle"]

DEFAULT_MODEL = "model"
"""``models/model.pt``: the name the MONAI Model Zoo gives a bundle's default model."""


@dataclass
class ShipResult:
    bundle: Path
    carried: list[str] = field(default_factory=list)
    formatted: list[str] = field(default_factory=list)
    exported: list[str] = field(default_factory=list)
    default_model: str | None = None

    def summary(self) -> str:
        lines = [f"shipped {self.bundle}:"]
        lines.append(f"  carried code: {len(self.carried)} files in scripts/ generated from the installed packages"
                     if self.carried else "  carried code: none (inference.json names no scripts.)")
        lines.append(f"  configs reformatted (indent 4): {', '.join(self.formatted) or 'none needed'}")
        lines += [f"  exported {rel}" for rel in self.exported]
        if self.default_model:
            lines.append(f"  default model: models/{DEFAULT_MODEL}.pt = models/model_{self.default_model}.pt")
        return "\n".join(lines)


def pretty_format_json(text: str) -> str:
    """The layout of the zoo's pre-commit ``pretty-format-json --indent=4 --no-sort-keys``."""
    return json.dumps(json.loads(text), indent=4, ensure_ascii=False) + "\n"


def ship_bundle(bundle_dir: str | os.PathLike) -> ShipResult:
    """Regenerate the derived files of the bundle folder ``bundle_dir`` (see the module docstring)."""
    bundle = Path(bundle_dir)
    if not (bundle / "configs" / "inference.json").is_file():
        raise FileNotFoundError(f"{bundle / 'configs' / 'inference.json'} does not exist: not a bundle folder")
    result = ShipResult(bundle)
    if "scripts." in (bundle / "configs" / "inference.json").read_text(encoding="utf-8"):
        result.carried = write_carried_code(bundle)
    for path in sorted((bundle / "configs").glob("*.json")):
        text = path.read_text(encoding="utf-8")
        pretty = pretty_format_json(text)
        if pretty != text:
            atomic_write_text(path, pretty)
            result.formatted.append(path.name)
    problems = bundle_code_problems(bundle)
    if problems:
        raise ValueError(f"{bundle}: the bundle's configs fail the allow-list: {problems[0]}")
    meta = metadata_of(bundle)
    models = {name: files for name, files in find_models(bundle).items() if files.pytorch is not None}
    if not models:
        return result
    with use_bundle_code(bundle):
        for name, files in models.items():
            out = bundle / "models" / f"model_{name}.ts"
            export_torchscript(bundle, name, files.pytorch, out, metadata=meta)
            result.exported.append(out.relative_to(bundle).as_posix())
        default = read_inference_config(bundle).get("sequence")
        if default in models:
            target = bundle / "models" / f"{DEFAULT_MODEL}.pt"
            with atomic_path(target) as tmp:
                shutil.copyfile(models[default].pytorch, tmp)
            export_torchscript(bundle, default, target, bundle / "models" / f"{DEFAULT_MODEL}.ts", metadata=meta)
            result.exported.append(f"models/{DEFAULT_MODEL}.ts")
            result.default_model = default
        from pipeline.inference.onnx_export import export_bundle_onnx  # issue 15's exports, beside the weights

        for name, out in export_bundle_onnx(bundle, names=list(models)).items():
            result.exported.append(Path(out).relative_to(bundle).as_posix())
    return result
