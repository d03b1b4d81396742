"""Report rows: pre-training variants x axes, each crossed with pre-training steps (Figure 5),
fine-tuning recipes and multi-task groups. A row names the trials behind its cells; it does not
run anything itself."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any

from bertabl.errors import MatrixError
from bertabl.matrix.schema import Matrix, Variant

HeadKey = tuple[str, int, str | None]  # (head, BiLSTM size, feature mode)


@dataclass(frozen=True)
class Row:
    """One report row: a named pre-training variant, with a fine-tuning recipe (recipe rows
    cross the pre-training rows) and, for multi-task rows, a group of tasks that share one
    encoder."""

    name: str
    label: str
    pretrain_id: str
    settings: tuple[tuple[str, Any], ...]  # the overrides that define it, for the report
    head: HeadKey = ("linear", 0, None)
    pretrain_step: int | None = None  # fine-tune from the model after this step; None = final
    recipe: str = ""  # its RecipeRow's name; "" = finetune.recipe itself
    multitask: str = ""  # the finetune.multitask group whose tasks share one encoder; "" = none
    variant: str = ""  # the pre-training variant it comes from; "" = none (axes only)


def pretrain_row(
    variant: Variant | None,
    overrides: list[tuple[str, Any]],
    settings: list[tuple[str, Any]],
    pretrain_id: str,
    matrix: Matrix,
) -> Row:
    """The row of one variant x axes combination (named "base" when the matrix has neither)."""
    name = variant.name if variant else ""
    label = (variant.label or variant.name) if variant else ""
    if settings:
        suffix = ",".join(f"{k}={v}" for k, v in settings)
        name = f"{name}/{suffix}" if name else suffix
        label = f"{label} ({suffix})" if label else suffix
    head = _row_head(variant, matrix)
    row_settings = tuple(overrides + settings)
    if head[0] != "linear":
        row_settings += (("head", head[0]),)
    if head[2] is not None:
        row_settings += (("features", head[2]),)
    return Row(
        name or "base", label or "base", pretrain_id, row_settings, head,
        variant=variant.name if variant else "",
    )  # fmt: skip


def _row_head(variant: Variant | None, matrix: Matrix) -> HeadKey:
    """The row's (head, BiLSTM size, feature mode): the variant's override, else the matrix's."""
    base = matrix.finetune
    overrides = variant.finetune if variant else None

    def pick(key: str):
        value = getattr(overrides, key) if overrides else None
        return value if value is not None else getattr(base, key)

    head = pick("head")
    return head, pick("bilstm_hidden"), pick("features") if head == "features" else None


def rows_per_pretrain_step(
    rows: list[Row], total_steps: dict[str, int], steps: list[int], origin: str
) -> list[Row]:
    """One row per (row, listed pre-training step); the last step is the final model."""
    if not steps:
        return rows
    expanded = []
    for row in rows:
        total = total_steps[row.pretrain_id]
        if total == 0:  # objective = "none": one model at every step (Figure 5's 0-step point)
            expanded.append(row)
            continue
        for i, step in enumerate(steps):
            if step > total:
                raise MatrixError(
                    f"{origin}: finetune.pretrain_steps[{i}]: step {step} is beyond "
                    f"pretrain.steps = {total} (row {row.name}); list steps up to {total}"
                )
            expanded.append(
                replace(
                    row,
                    name=f"{row.name}@{step}",
                    label=f"{row.label} ({step} steps)",
                    pretrain_step=None if step == total else step,
                )
            )
    return expanded


@dataclass(frozen=True)
class RecipeRow:
    """A named recipe: a recipe variant, an axes combination, or a variant x a combination."""

    name: str
    label: str
    keys: dict[str, Any]  # the recipe keys it sets
    where: str  # the matrix keys that define it, for errors
    head: str | None = None  # a head override (recipe variants only)
    bilstm_hidden: int | None = None
    features: str | None = None


def recipe_rows(matrix: Matrix) -> list[RecipeRow]:
    """finetune.recipe_variants x the product of finetune.recipe_axes, in matrix order."""
    ft = matrix.finetune
    axes = list(ft.recipe_axes.items())
    if not ft.recipe_variants and not axes:
        return []
    combos = list(itertools.product(*[[(k, v) for v in values] for k, values in axes]))
    rows = []
    for index, variant in list(enumerate(ft.recipe_variants)) or [(None, None)]:
        for combo in combos:
            keys = variant.recipe.model_dump(mode="json", exclude_none=True) if variant else {}
            keys |= dict(combo)
            suffix = ",".join(f"{k}={v}" for k, v in combo)
            name = variant.name if variant else ""
            label = (variant.label or variant.name) if variant else ""
            where = f"finetune.recipe_variants[{index}] ({name})" if variant else ""
            if suffix:
                name = f"{name}/{suffix}" if name else suffix
                label = f"{label} ({suffix})" if label else suffix
                axes_where = f"finetune.recipe_axes ({suffix})"
                where = f"{where} with {axes_where}" if where else axes_where
            head = (variant.head, variant.bilstm_hidden, variant.features) if variant else ()
            rows.append(RecipeRow(name, label, keys, where, *head))
    return rows


def rows_per_recipe(rows: list[Row], matrix: Matrix) -> list[Row]:
    """One row per (row, recipe row); a recipe variant's head override beats the row's."""
    recipes = recipe_rows(matrix)
    if not recipes:
        return rows
    expanded = []
    for row in rows:
        for recipe in recipes:
            if not _crossed(row, recipe.name, matrix):
                continue
            head, bilstm_hidden, features = row.head
            head = recipe.head or head
            if recipe.bilstm_hidden is not None:
                bilstm_hidden = recipe.bilstm_hidden
            if head == "features":
                features = recipe.features or features or matrix.finetune.features
            else:
                features = None
            settings = tuple((f"recipe.{k}", v) for k, v in recipe.keys.items())
            if head != row.head[0]:
                settings += (("head", head),)
            alone = row.name == "base" and len(rows) == 1  # no pre-training variants: just recipes
            expanded.append(
                replace(
                    row,
                    name=recipe.name if alone else f"{row.name}+{recipe.name}",
                    label=recipe.label if alone else f"{row.label}, {recipe.label}",
                    settings=row.settings + settings,
                    head=(head, bilstm_hidden, features),
                    recipe=recipe.name,
                )
            )
    return expanded


def _crossed(row: Row, name: str, matrix: Matrix) -> bool:
    """Whether `row` is crossed with the recipe row or multi-task group `name` (a variant's
    finetune.recipes; default: every one)."""
    for variant in matrix.pretrain.variants:
        if variant.name == row.variant and variant.finetune.recipes is not None:
            return name in variant.finetune.recipes
    return True


def check_crossed_recipes(matrix: Matrix, origin: str) -> None:
    """Every name a variant's finetune.recipes lists is a recipe row or multi-task group, and
    every name a multi-task group's recipes lists a recipe row."""
    recipes = [r.name for r in recipe_rows(matrix)]
    known = recipes + [g.name for g in matrix.finetune.multitask]
    for index, group in enumerate(matrix.finetune.multitask):
        for name in group.recipes or ():
            if name not in recipes:
                raise MatrixError(
                    f"{origin}: finetune.multitask[{index}].recipes: '{name}' is not a recipe "
                    f"row of this matrix; known: "
                    f"{', '.join(recipes) or 'none (add finetune.recipe_variants)'}"
                )
    for index, variant in enumerate(matrix.pretrain.variants):
        for name in variant.finetune.recipes or ():
            if name not in known:
                raise MatrixError(
                    f"{origin}: pretrain.variants[{index}].finetune.recipes: '{name}' is not a "
                    f"recipe row or multi-task group of this matrix; known: "
                    f"{', '.join(known) or 'none (add finetune.recipe_variants)'}"
                )


def rows_per_multitask(rows: list[Row], matrix: Matrix) -> list[Row]:
    """One more row per (row, multi-task group), after the single-task rows."""
    added = []
    for row in rows:
        for group in matrix.finetune.multitask:
            if not _crossed(row, group.name, matrix):
                continue
            if group.recipes is not None and row.recipe not in group.recipes:
                continue
            label = group.label or f"multi-task ({' + '.join(group.tasks)})"
            alone = row.name == "base" and len(rows) == 1
            added.append(
                replace(
                    row,
                    name=group.name if alone else f"{row.name}+{group.name}",
                    label=label if alone else f"{row.label}, {label}",
                    settings=row.settings + (("multitask", "+".join(group.tasks)),),
                    multitask=group.name,
                )
            )
    return added
