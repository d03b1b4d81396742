"""Pre-training variants x axes -> validated PretrainConfigs, with errors that point at the
single variant key or axis entry that breaks the config (or else name the whole combination)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from bertabl.errors import MatrixError
from bertabl.matrix.load import format_key_path, format_validation_error, split_key_path
from bertabl.matrix.presets import deep_merge
from bertabl.matrix.schema import PretrainSection, Variant
from bertabl.trial.pretrain import PretrainConfig


def pretrain_combinations(
    section: PretrainSection, origin: str
) -> Iterator[tuple[Variant | None, list[tuple[str, Any]], list[tuple[str, Any]], PretrainConfig]]:
    """Yield (variant or None, its overrides, the axes settings, PretrainConfig) per variant x
    axes combination, in matrix order.

    A variant is validated as a whole (its keys may only make sense together, like hidden and
    heads); each axes combination is validated on top of it.
    """
    base = section.base()
    axis_keys = list(section.axes)
    variants = [(i, v) for i, v in enumerate(section.variants) if v.from_ is None]
    if section.variants and not variants:
        return  # every row fine-tunes a checkpoint: nothing to pre-train
    for index, variant in variants or [(None, None)]:
        overrides = list(flatten(variant.pretrain)) if variant else []
        variant_base = apply(base, overrides)
        if variant is not None:
            _validate(variant_base, origin, f"pretrain.variants[{index}].pretrain")
        indexed_values = [list(enumerate(section.axes[k])) for k in axis_keys]
        for combo in itertools.product(*indexed_values):
            settings = [(k, v) for k, (_, v) in zip(axis_keys, combo, strict=True)]
            positions = [(k, j) for k, (j, _) in zip(axis_keys, combo, strict=True)]
            config = _validate_combination(variant_base, settings, positions, origin, overrides)
            yield variant, overrides, settings, config


def _validate_combination(
    variant_base: dict[str, Any],
    settings: list[tuple[str, Any]],
    positions: list[tuple[str, int]],
    origin: str,
    overrides: list[tuple[str, Any]],
) -> PretrainConfig:
    try:
        return PretrainConfig.model_validate(apply(variant_base, settings))
    except ValidationError:
        pass
    alone_failing = []
    for (key, value), (_, j) in zip(settings, positions, strict=True):
        try:
            PretrainConfig.model_validate(apply(variant_base, [(key, value)]))
        except ValidationError:
            alone_failing.append((key, value, j))
    if len(alone_failing) == 1:
        key, value, j = alone_failing[0]
        where = f"{format_key_path(('pretrain', 'axes', key))}[{j}]"
        _validate(apply(variant_base, [(key, value)]), origin, where)
    where = "pretrain: the combination " + ", ".join(
        f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in [*overrides, *settings]
    )
    return _validate(apply(variant_base, settings), origin, where)


def apply(config: dict[str, Any], overrides: list[tuple[str, Any]]) -> dict[str, Any]:
    """`config` with each (dotted key path, value) override merged in."""
    for path, value in overrides:
        nested: Any = value
        for part in reversed(split_key_path(path)):
            nested = {part: nested}
        config = deep_merge(config, nested)
    return config


def _validate(config: dict[str, Any], origin: str, where: str) -> PretrainConfig:
    try:
        return PretrainConfig.model_validate(config)
    except ValidationError as err:
        # e.g. `m.toml: pretrain.axes."model.heads"[1]: pretrain.model: heads (3) must divide...`
        raise MatrixError(
            format_validation_error(
                err, origin=f"{origin}: {where}", prefix=("pretrain",), root=PretrainConfig
            )
        ) from None


def flatten(table: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """{"model": {"layers": 4}} -> ("model.layers", 4); quoted dotted keys pass through."""
    for key, value in table.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            yield from flatten(value, path)
        else:
            yield path, value
