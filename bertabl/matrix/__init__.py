"""The ablation matrix: TOML schema, loading with key-path errors, and expansion into a Plan."""

from bertabl.matrix.load import load_matrix, parse_override
from bertabl.matrix.plan import FinetuneTrial, Plan, PretrainTrial, build_plan
from bertabl.matrix.schema import Matrix

__all__ = [
    "FinetuneTrial",
    "Matrix",
    "Plan",
    "PretrainTrial",
    "build_plan",
    "load_matrix",
    "parse_override",
]
