"""The dense baseline."""

from prunebench.methods.base import DenseMethod
from prunebench.methods.method_registry import register


@register("dense", schedule="dense", scopes=(), paper="unpruned baseline, trained for the whole budget")
class Dense(DenseMethod):
    """Unpruned baseline: the same model and recipe, trained dense for the whole budget."""
