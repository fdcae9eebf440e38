"""Every distribution in setup.cfg's install_requires is used: imported (or probed by name) by a module of
pipeline/, transforms/ or evaluation/, or named by a bundle config (``$import``, ``_target_``)."""

from __future__ import annotations

import ast
import configparser
import json
import re
from collections.abc import Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

import yaml
from monai.bundle.config_item import ComponentLocator
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "transforms", "evaluation")
PROBES = ("find_spec", "import_module", "optional_import")
"""Calls whose first argument names a module that is imported (or looked for) at run time."""

USED_THROUGH = {"tensorboard": ("torch.utils.tensorboard", "monai.handlers.tensorboard_handlers")}
"""Distributions our code reaches through another package's module: MONAI's ``TensorBoardStatsHandler`` (in
``monai.handlers.tensorboard_handlers``) writes with ``torch.utils.tensorboard``, which needs ``tensorboard``."""


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(setup_cfg: str) -> set[str]:
    """The distribution names of ``install_requires`` in the text of a setup.cfg."""
    parser = configparser.ConfigParser()
    parser.read_string(setup_cfg)
    return {Requirement(line).name for line in parser["options"]["install_requires"].splitlines() if line.strip()}


def _code_modules() -> Iterator[str]:
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
                if isinstance(node, ast.Import):
                    yield from (alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    yield node.module
                elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                        and isinstance(node.args[0].value, str) and ast.unparse(node.func).endswith(PROBES):
                    yield node.args[0].value


def _strings(value: object, key: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, str(k))
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v, key)
    elif isinstance(value, str):
        yield key, value


def _config_modules() -> Iterator[str]:
    locator = ComponentLocator()
    for path in sorted(REPO.glob("bundles/*/configs/*")):
        if path.suffix not in (".json", ".yaml", ".yml"):
            continue
        text = path.read_text(encoding="utf-8")
        for key, value in _strings(yaml.safe_load(text) if path.suffix != ".json" else json.loads(text)):
            found = re.match(r"\$\s*(?:import|from)\s+([\w.]+)", value)
            if found:
                yield found.group(1)
            elif key == "_target_":
                yield value if "." in value else (locator.get_component_module_name(value) or value)


def unused(names: set[str], modules: set[str]) -> set[str]:
    """The distributions of ``names`` that no module in ``modules`` belongs to (or reaches through
    :data:`USED_THROUGH`)."""
    owners: dict[str, set[str]] = {}
    for top, distributions in packages_distributions().items():
        for distribution in distributions:
            owners.setdefault(_normal(distribution), set()).add(top)
    tops = {m.split(".")[0] for m in modules}
    left = set()
    for name in names:
        through = USED_THROUGH.get(_normal(name), ())
        if not owners.get(_normal(name), set()) & tops and not any(m in modules for m in through):
            left.add(name)
    return left


def test_every_declared_dependency_is_imported():
    modules = set(_code_modules()) | set(_config_modules())
    names = declared((REPO / "setup.cfg").read_text())
    assert len(names) > 10 and {"scikit-learn", "pyyaml", "SimpleITK", "fire"} <= names
    assert unused(names, modules) == set()
    # and it can fail: a distribution declared but imported nowhere, or used only by a removed config handler
    assert unused(names | {"left-pad"}, modules) == {"left-pad"}
    assert unused(names, modules - {"monai.handlers.tensorboard_handlers"}) == {"tensorboard"}
