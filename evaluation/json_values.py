"""The reports' JSON files: one rule for the numbers JSON cannot hold, one way to write a document.

* NaN (undefined: a metric of one class, a statistic of no case) is written as ``null``;
* ``inf`` / ``-inf`` (a distance to an empty mask under the raw empty-case policy, and the statistics it
  enters) as the strings ``"inf"`` / ``"-inf"``, so that an infinite mean is not read as undefined;
* numpy scalars become Python numbers, tuples lists, mapping keys strings.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["json_ready", "json_text"]


def json_ready(value: Any) -> Any:
    """``value`` with every number JSON can hold (module docstring), recursively through mappings and lists."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    return value


def json_text(document: Any) -> str:
    """The document as indented JSON text with a final newline (:func:`json_ready` first; no NaN literal)."""
    return json.dumps(json_ready(document), indent=2, allow_nan=False) + "\n"
