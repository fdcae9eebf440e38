"""Check a bundle's config files for code, without evaluating anything.

A MONAI bundle config is code: ``monai.bundle`` ``eval()``s every string that starts with ``$``, imports
every ``_target_``, and ``pdb``-runs components in ``_mode_: debug``. A received bundle is untrusted, so
before anything is instantiated every config file is parsed as data (``json``/``yaml.safe_load``) and
each of these is checked against an allow-list of *wiring*:

* ``$`` expressions, parsed with :mod:`ast` (never evaluated): references (``@id``), literals,
  arithmetic, comparisons, conditionals, string building, containers and comprehensions, lambdas,
  attribute reads (no ``_``-prefixed names), imports of allow-listed modules, calls of allow-listed
  callables (:data:`ALLOWED_CALLABLES`, prefixes of dotted names after resolving the config's imports),
  of a few builtins (:data:`ALLOWED_BUILTINS`), and of allow-listed methods (:data:`ALLOWED_METHODS`) on
  values; ``torch.load`` only with ``weights_only=True``;
* ``_target_`` names: a dotted name in :data:`ALLOWED_CALLABLES`, or a bare MONAI component name that
  MONAI's own ``ComponentLocator`` finds in an allow-listed MONAI module;
* ``_mode_``: ``default``, ``callable`` or ``partial`` (not ``debug``);
* ``%`` macros: an id in this file or a ``.json``/``.yaml`` file name without folders or ``..``;
* arguments that make an allow-listed reader unpickle (``allow_pickle``, ``weights_only``, ``pickle_module``),
  in a component or a call, unless they have the safe value.

Each refusal names the file, the config id and the expression.
"""

from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from pipeline.bundle_trust.carried_code import CARRIED_PACKAGES

__all__ = [
    "ALLOWED_BUILTINS",
    "ALLOWED_CALLABLES",
    "ALLOWED_METHODS",
    "ConfigProblem",
    "check_config_files",
    "check_config_value",
    "check_expression",
    "parse_expression",
    "referenced_id",
]

ALLOWED_MODULES = ("torch", "monai", "ignite", "numpy", "pipeline", "transforms", "evaluation", "scripts", "os",
                   "math")
"""Modules a config may import (and their submodules); what it may *use* of them is :data:`ALLOWED_CALLABLES`."""

ALLOWED_CALLABLES = (
    # this project's packages (installed, reviewed code) and the code a bundle carries in scripts/, which
    # :mod:`.carried_code` checks is exactly what this package generates
    "pipeline.", "transforms.", "evaluation.", *(f"{p}." for p in CARRIED_PACKAGES),
    # MONAI building blocks (not monai.bundle, monai.apps downloads or monai.utils' import/instantiate helpers)
    "monai.transforms.", "monai.networks.", "monai.inferers.", "monai.handlers.", "monai.engines.", "monai.data.",
    "monai.losses.", "monai.metrics.", "monai.optimizers.", "monai.utils.set_determinism", "monai.utils.enums.",
    "ignite.handlers.", "ignite.metrics.", "ignite.engine.Events",
    "torch.device", "torch.cuda.is_available", "torch.cuda.set_device", "torch.cuda.device_count",
    "torch.optim.", "torch.nn.", "torch.float", "torch.int", "torch.uint8", "torch.bfloat16", "torch.no_grad",
    "torch.distributed.get_rank", "torch.distributed.get_world_size", "torch.distributed.is_initialized",
    "torch.distributed.init_process_group", "torch.distributed.destroy_process_group",
    "torch.load",  # only with weights_only=True, see _check_call
    "os.environ", "math.",
    "numpy.float", "numpy.int", "numpy.uint8", "numpy.array", "numpy.asarray",
)
"""Dotted names (after resolving a config's imports) that a config may name or call: an entry ending in ``.``
allows everything below it, any other entry itself and what starts with it (``torch.float`` covers
``torch.float32``)."""

DENIED_BELOW = ("monai.data.utils.pickle", "torch.nn.modules.module.register", "monai.networks.utils.pytorch_after")
"""Exceptions carved out of :data:`ALLOWED_CALLABLES`."""

ALLOWED_BUILTINS = frozenset({
    "None", "True", "False", "str", "int", "float", "bool", "len", "range", "isinstance", "list", "tuple", "dict",
    "set", "min", "max", "sum", "sorted", "abs", "round", "zip", "enumerate", "any", "all", "slice",
})

ALLOWED_METHODS = frozenset({
    "run", "to", "parameters", "named_parameters", "state_dict", "load_state_dict", "eval", "train", "cpu",
    "cuda", "set_trainer", "get", "keys", "values", "items", "startswith", "endswith", "lower", "upper", "strip",
    "split", "join", "replace",
})
"""Methods that may be called on values (references, call results, lambda arguments)."""

UNPICKLING_SWITCHES = {"allow_pickle": False, "weights_only": True}
"""Arguments of allow-listed callables that would unpickle files (``numpy.load``, ``torch.load``, MONAI's
``NumpyReader`` and ``PersistentDataset``): only the safe value is accepted, in a component or a call."""
REFUSED_ARGUMENTS = frozenset({"pickle_module", "trust_remote_code"})

MONAI_COMPONENT_MODULES = tuple(p.rstrip(".") for p in ALLOWED_CALLABLES if p.startswith("monai."))
ALLOWED_MODES = frozenset({"default", "callable", "partial"})
_DEFAULT_GLOBALS = {"monai": "monai", "torch": "torch", "np": "numpy", "numpy": "numpy"}  # monai.bundle's
_REF = re.compile(r"@([\w#]+)")
_REF_NAME = "__dmg_ref_"
_MACRO = re.compile(r"^%(?P<file>[^#]*)(#.*)?$")
CONFIG_SUFFIXES = (".json", ".yaml", ".yml")


@dataclass(frozen=True)
class ConfigProblem:
    """One refused item of a config file."""

    file: str
    key: str
    text: str
    reason: str

    def __str__(self) -> str:
        text = self.text if len(self.text) <= 160 else self.text[:157] + "..."
        return f"{self.file}: {self.key or '<root>'}: {text!r}: {self.reason}"


class _Refused(ValueError):
    pass


def _allowed_dotted(name: str) -> bool:
    if any(name == d or name.startswith(d + ".") for d in DENIED_BELOW):
        return False
    for entry in ALLOWED_CALLABLES:
        if entry.endswith("."):
            if name.startswith(entry) or name == entry[:-1]:
                return True
        elif name == entry or name.startswith(entry):
            return True
    return False


def _allowed_module(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in ALLOWED_MODULES)


@lru_cache(maxsize=None)
def _monai_component_module(name: str) -> str | None:
    """Module in which MONAI's ``ComponentLocator`` (what ``_target_`` uses for a bare name) finds ``name``."""
    from monai.bundle.config_item import ComponentLocator

    module = ComponentLocator().get_component_module_name(name)
    if isinstance(module, list):  # ambiguous: MONAI would refuse it too
        return None
    return module


def _allowed_target(target: str) -> bool:
    if "." not in target:
        module = _monai_component_module(target)
        return module is not None and any(module == m or module.startswith(m + ".")
                                          for m in MONAI_COMPONENT_MODULES)
    return _allowed_dotted(target)


def _imports_of(statement: ast.stmt) -> dict[str, str]:
    """``import a.b as c`` -> ``{"c": "a.b"}``; ``from a import b`` -> ``{"b": "a.b"}``; refuses other modules."""
    names: dict[str, str] = {}
    if isinstance(statement, ast.Import):
        for alias in statement.names:
            if not _allowed_module(alias.name):
                raise _Refused(f"import of module {alias.name!r} is not allowed")
            names[alias.asname or alias.name] = alias.name  # as monai.bundle binds it: "import a.b" -> "a.b"
    else:
        module = statement.module or ""
        if statement.level or not _allowed_module(module):
            raise _Refused(f"import from module {module!r} is not allowed")
        if len(statement.names) > 1:  # monai.bundle binds only the first name of such a statement
            raise _Refused("import one name per statement (monai.bundle binds only the first)")
        for alias in statement.names:
            if alias.name == "*":
                raise _Refused("'import *' is not allowed")
            names[alias.asname or alias.name] = f"{module}.{alias.name}"
    return names


class _ExpressionChecker:
    """Walks one expression's AST; ``imports`` maps global names to dotted module paths."""

    def __init__(self, imports: dict[str, str]):
        self.imports = imports

    def dotted(self, node: ast.expr, local: frozenset[str]) -> str | None:
        """The dotted name of ``a.b.c`` when ``a`` is an imported name, else ``None``."""
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id not in local and node.id in self.imports:
            return ".".join([self.imports[node.id], *reversed(parts)])
        return None

    def check(self, node: ast.AST, local: frozenset[str] = frozenset()) -> None:
        if isinstance(node, (ast.Name, ast.Attribute)):
            self._check_name(node, local)
        elif isinstance(node, ast.Call):
            self._check_call(node, local)
        elif isinstance(node, ast.Lambda):
            args = node.args
            if args.vararg or args.kwarg or args.kw_defaults or args.defaults:
                raise _Refused("lambda with defaults, *args or **kwargs is not allowed")
            self.check(node.body, local | {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs})
        elif isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            inner = local
            for comp in node.generators:
                self.check(comp.iter, inner)
                inner = inner | {n.id for n in ast.walk(comp.target) if isinstance(n, ast.Name)}
                for cond in comp.ifs:
                    self.check(cond, inner)
            for part in ((node.key, node.value) if isinstance(node, ast.DictComp) else (node.elt,)):
                self.check(part, inner)
        elif isinstance(node, (ast.Constant, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.Subscript,
                               ast.Slice, ast.List, ast.Tuple, ast.Dict, ast.Set, ast.JoinedStr, ast.FormattedValue,
                               ast.keyword, ast.Starred, ast.operator, ast.unaryop, ast.boolop, ast.cmpop,
                               ast.expr_context)):
            for child in ast.iter_child_nodes(node):
                self.check(child, local)
        else:
            raise _Refused(f"{type(node).__name__} is not allowed in a config expression")

    def _check_name(self, node: ast.Name | ast.Attribute, local: frozenset[str]) -> None:
        if isinstance(node, ast.Attribute):
            if node.attr.startswith("_"):
                raise _Refused(f"attribute {node.attr!r} is not allowed (no '_' names)")
            dotted = self.dotted(node, local)
            if dotted is not None:
                if not _allowed_dotted(dotted):
                    raise _Refused(f"{dotted} is not on the allow-list")
                return
            self.check(node.value, local)
            return
        name = node.id
        if name in local or name.startswith(_REF_NAME):
            return
        if name in self.imports:
            if not _allowed_module(self.imports[name]) and not _allowed_dotted(self.imports[name]):
                raise _Refused(f"{self.imports[name]} is not on the allow-list")
            return
        if name not in ALLOWED_BUILTINS:
            raise _Refused(f"name {name!r} is not allowed (not imported, not an allowed builtin)")

    def _check_call(self, node: ast.Call, local: frozenset[str]) -> None:
        func = node.func
        dotted = self.dotted(func, local) if isinstance(func, (ast.Name, ast.Attribute)) else None
        if dotted is not None:
            if not _allowed_dotted(dotted):
                raise _Refused(f"call of {dotted} is not on the allow-list")
            if dotted in ("torch.load", "numpy.load") and not any(
                    k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                    for k in node.keywords):
                raise _Refused(f"{dotted} without weights_only=True (unpickles arbitrary objects)")
        elif isinstance(func, ast.Name):
            self._check_name(func, local)
            if func.id in local:
                raise _Refused(f"call of the local value {func.id!r} is not allowed")
            if func.id.startswith(_REF_NAME):
                raise _Refused("calling a referenced value is not allowed")
        elif isinstance(func, ast.Attribute):
            self._check_name(func, local)
            if func.attr not in ALLOWED_METHODS:
                raise _Refused(f"method {func.attr!r} is not on the allow-list")
        else:
            raise _Refused(f"call of a {type(func).__name__} is not allowed")
        for arg in node.args:
            self.check(arg, local)
        for kw in node.keywords:
            if kw.arg is None:
                raise _Refused("'**' arguments are not allowed")
            _check_argument(kw.arg, kw.value.value if isinstance(kw.value, ast.Constant) else kw.value)
            self.check(kw.value, local)


def _check_argument(name: str, value: Any) -> None:
    """Refuse an argument that would make an allow-listed callable unpickle (see :data:`UNPICKLING_SWITCHES`)."""
    if name in REFUSED_ARGUMENTS:
        raise _Refused(f"argument {name!r} is not allowed")
    if name in UNPICKLING_SWITCHES and value is not UNPICKLING_SWITCHES[name]:
        raise _Refused(f"{name} must be {UNPICKLING_SWITCHES[name]} (anything else unpickles arbitrary objects)")


def parse_expression(text: str) -> tuple[ast.Module, tuple[str, ...]]:
    """The syntax tree of one ``$`` string (with or without its ``$``), never evaluated, and the config ids it
    references: ``@id`` becomes the name ``__dmg_ref_<i>`` where ``i`` indexes the returned ids. Raises
    ``ValueError`` when it is not Python."""
    refs: list[str] = []

    def placeholder(match: re.Match) -> str:
        refs.append(match[1])
        return f"{_REF_NAME}{len(refs) - 1}"

    body = _REF.sub(placeholder, text.removeprefix("$")).strip()
    try:
        return ast.parse(body, mode="exec"), tuple(refs)
    except SyntaxError as exc:
        raise _Refused(f"not a Python expression ({exc.msg})") from None


def referenced_id(node: ast.AST, refs: tuple[str, ...]) -> str | None:
    """The config id a node of :func:`parse_expression`'s tree stands for, if it is a reference."""
    if isinstance(node, ast.Name) and node.id.startswith(_REF_NAME):
        return refs[int(node.id[len(_REF_NAME):])]
    return None


def check_expression(text: str, imports: dict[str, str] | None = None) -> dict[str, str]:
    """Check one ``$`` string (with or without its ``$``). Returns the names an import statement binds
    (empty for an expression); raises ``ValueError`` with the reason when it is refused."""
    tree, _ = parse_expression(text)
    if len(tree.body) != 1:
        raise _Refused("more than one statement")
    statement = tree.body[0]
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        return _imports_of(statement)
    if not isinstance(statement, ast.Expr):
        raise _Refused(f"{type(statement).__name__} statement is not allowed (expressions and imports only)")
    _ExpressionChecker({**_DEFAULT_GLOBALS, **(imports or {})}).check(statement.value)
    return {}


def _walk(value: Any, key: str = "") -> Iterator[tuple[str, str, Any]]:
    """``(config id, field name, value)`` for every leaf and special field of a parsed config."""
    if isinstance(value, dict):
        for k, v in value.items():
            child = f"{key}#{k}" if key else str(k)
            if k in ("_target_", "_mode_"):
                yield child, k, v
            else:
                yield from _walk(v, child)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{key}#{i}" if key else str(i))
    else:
        yield key, "", value


def _import_statements(config: Any) -> list[str]:
    found = []
    for key in ("imports", "+imports"):
        items = config.get(key) if isinstance(config, dict) else None
        if isinstance(items, list):
            found += [i for i in items if isinstance(i, str) and i.startswith("$")]
    return found


def check_config_value(config: Any, file: str, imports: dict[str, str] | None = None) -> list[ConfigProblem]:
    """Every refused item of one parsed config (``imports``: names bound by other files' import sections)."""
    problems: list[ConfigProblem] = []
    names = dict(imports or {})
    for statement in _import_statements(config):
        try:
            names.update(check_expression(statement))
        except ValueError:
            pass  # reported below with its key
    for key, field, value in _walk(config):
        if field == "_target_":
            if not isinstance(value, str) or not _allowed_target(value):
                problems.append(ConfigProblem(file, key, str(value), "_target_ is not on the allow-list"))
            continue
        if field == "_mode_":
            if value not in ALLOWED_MODES:
                problems.append(ConfigProblem(file, key, str(value),
                                              f"_mode_ must be one of {', '.join(sorted(ALLOWED_MODES))}"))
            continue
        name = key.rsplit("#", 1)[-1]
        if name in UNPICKLING_SWITCHES or name in REFUSED_ARGUMENTS:
            try:
                _check_argument(name, value)
            except ValueError as exc:
                problems.append(ConfigProblem(file, key, str(value), str(exc)))
                continue
        if not isinstance(value, str):
            continue
        if value.startswith("$"):
            try:
                check_expression(value, names)
            except ValueError as exc:
                problems.append(ConfigProblem(file, key, value, str(exc)))
        elif value.startswith("%"):
            match = _MACRO.match(value)
            path = match["file"] if match else value
            if path and ("/" in path or "\\" in path or not path.endswith(CONFIG_SUFFIXES)):
                problems.append(ConfigProblem(file, key, value, "a macro may only name a config file beside this one"))
    return problems


def _load(path: Path) -> Any:
    """Parse a config file as data: ``.yaml``/``.yml`` with ``yaml.safe_load``, anything else as JSON (what
    MONAI's ``ConfigParser.load_config_file`` does for each suffix)."""
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) if path.suffix in (".yaml", ".yml") else json.load(f)


def check_config_files(configs_dir: str | os.PathLike, relative_to: str | os.PathLike | None = None
                       ) -> list[ConfigProblem]:
    """Check every ``.json``/``.yaml`` file under ``configs_dir`` (nothing is evaluated). A file that does not
    parse is a problem too. Import sections of all files count for all (MONAI merges them at run time)."""
    configs_dir = Path(configs_dir)
    base = Path(relative_to) if relative_to is not None else configs_dir.parent
    files = sorted(p for p in configs_dir.rglob("*") if p.is_file() and p.suffix in CONFIG_SUFFIXES)
    parsed: dict[Path, Any] = {}
    problems: list[ConfigProblem] = []
    imports: dict[str, str] = {}
    for path in files:
        name = path.relative_to(base).as_posix()
        try:
            parsed[path] = _load(path)
        except Exception as exc:  # bad JSON/YAML: cannot be checked, so cannot be run
            problems.append(ConfigProblem(name, "", "", f"cannot be parsed ({type(exc).__name__}: {exc})"[:300]))
            continue
        for statement in _import_statements(parsed[path]):
            try:
                imports.update(check_expression(statement))
            except ValueError:
                pass
    for path, config in parsed.items():
        problems += check_config_value(config, path.relative_to(base).as_posix(), imports)
    return problems
