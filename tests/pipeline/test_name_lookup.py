"""One name rule for the two registries of named networks (MSCG variants, H3K27M ablations)."""

from __future__ import annotations

import pytest

from pipeline.networks import H3K27M_CONFIGS, VARIANTS, get_h3k27m_config, get_variant
from pipeline.networks.name_lookup import look_up_name, normalise_name


@pytest.mark.parametrize("lookup, registry, spelling, key", [
    (get_variant, VARIANTS, "mscg_dis", "MSCG-Dis"),
    (get_variant, VARIANTS, " MSCG Dis ", "MSCG-Dis"),
    (get_h3k27m_config, H3K27M_CONFIGS, "CLS-only", "cls_only"),
    (get_h3k27m_config, H3K27M_CONFIGS, "Cls+Seg+Attention", "cls+seg+attention"),
])
def test_both_registries_use_the_one_name_rule(lookup, registry, spelling, key):
    assert lookup(spelling) is registry[key]


def test_the_name_rule_keeps_every_registered_name_distinct():
    for registry in (VARIANTS, H3K27M_CONFIGS):
        assert len({normalise_name(k) for k in registry}) == len(registry)


def test_an_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown MSCG variant 'UNet'; valid names: MSCG, MSCG-Dis, SCG"):
        get_variant("UNet")
    with pytest.raises(ValueError, match="unknown thing 'c'; valid names: a, b"):
        look_up_name({"a": 1, "b": 2}, "c", "thing")
