"""The five MSCG variants of Deng et al. 2026 (full model and ablations), built by name."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

from pipeline.networks.mscg_generator import MSCGenerator
from pipeline.networks.name_lookup import look_up_name
from pipeline.networks.patch_discriminator import PatchDiscriminator

__all__ = ["VariantSpec", "VARIANTS", "get_variant", "build_generator", "build_discriminator", "build_variant"]


@dataclass(frozen=True)
class VariantSpec:
    """Which generator modules a variant has and whether it trains adversarially."""

    name: str
    use_scse: bool
    use_mfe: bool
    use_cbam: bool
    adversarial: bool
    description: str


VARIANTS: Mapping[str, VariantSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            VariantSpec("MSCG", True, True, True, True, "full model: scSE + MFE + CBAM generator, with discriminator"),
            VariantSpec("MSCG-Dis", True, True, True, False, "full generator, no discriminator (supervised only)"),
            VariantSpec("SCG", True, False, True, True, "no MFE (pyramid pooling), with discriminator"),
            VariantSpec("MCG", False, True, True, True, "no scSE, with discriminator"),
            VariantSpec("MSG", True, True, False, True, "no CBAM in the generator, with discriminator"),
        )
    }
)
"""Variant name -> spec. The discriminator (with CBAM) is the same in every adversarial variant."""


def get_variant(name: str) -> VariantSpec:
    """Look a variant up by name (:func:`~pipeline.networks.name_lookup.look_up_name`: case, ``-``, ``_`` and
    spaces do not count)."""
    return look_up_name(VARIANTS, name, "MSCG variant")


def build_generator(name: str, **kwargs: Any) -> MSCGenerator:
    """Build the generator of variant ``name``; ``kwargs`` go to :class:`MSCGenerator`.

    The module switches (``use_scse``, ``use_mfe``, ``use_cbam``) are fixed by the
    variant; passing a conflicting value raises ``ValueError``.
    """
    spec = get_variant(name)
    flags = {"use_scse": spec.use_scse, "use_mfe": spec.use_mfe, "use_cbam": spec.use_cbam}
    for key, value in flags.items():
        if key in kwargs and bool(kwargs[key]) != value:
            raise ValueError(f"variant {spec.name} fixes {key}={value}; got {key}={kwargs[key]!r}.")
    return MSCGenerator(**{**kwargs, **flags})


def build_discriminator(
    name: str, spatial_dims: int = 2, image_channels: int = 1, mask_channels: int = 1, **kwargs: Any
) -> PatchDiscriminator | None:
    """Build the discriminator of variant ``name`` (None for supervised-only variants)."""
    spec = get_variant(name)
    if not spec.adversarial:
        return None
    return PatchDiscriminator(
        spatial_dims=spatial_dims, image_channels=image_channels, mask_channels=mask_channels, **kwargs
    )


def build_variant(
    name: str, discriminator_kwargs: Mapping[str, Any] | None = None, **generator_kwargs: Any
) -> tuple[MSCGenerator, PatchDiscriminator | None]:
    """Build ``(generator, discriminator)`` for one of :data:`VARIANTS` (name case-insensitive).

    Args:
        name: ``MSCG``, ``MSCG-Dis``, ``SCG``, ``MCG`` or ``MSG``.
        discriminator_kwargs: extra :class:`PatchDiscriminator` arguments. Its
            ``spatial_dims``, ``image_channels`` and ``mask_channels`` default to the
            generator's ``spatial_dims``, ``in_channels`` and ``out_channels``.
        generator_kwargs: :class:`MSCGenerator` arguments (module switches are set by the variant).

    Returns:
        The generator, and the discriminator or None for ``MSCG-Dis``.
    """
    generator = build_generator(name, **generator_kwargs)
    disc_kwargs = {
        "spatial_dims": generator.spatial_dims,
        "image_channels": generator.in_channels,
        "mask_channels": generator.out_channels,
        **dict(discriminator_kwargs or {}),
    }
    return generator, build_discriminator(name, **disc_kwargs)
