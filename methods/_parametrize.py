"""Reparametrizing a prunable weight wherever the model uses it, for the methods that train a mask with the weights.

A weight is usually one attribute of one module (a Linear's ``weight``, an attention block's ``in_proj_weight``); a
tied weight is one parameter held by several modules, and each of them must compute with the masked weight. The
parametrizations are :mod:`torch.nn.utils.parametrize` ones: the parameter itself stays the ``original`` of each
(the same object, so the weight optimizer and the session keep training it) and comes back in place on removal.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils import parametrize

from prunebench.prunable import weight_locations

Locations = list[tuple[nn.Module, str]]


def parametrize_weight(
    model: nn.Module, name: str, parametrization: nn.Module, *, unsafe: bool = False
) -> Locations:
    """Register ``parametrization`` on every ``(module, attribute)`` holding the weight keyed ``name``; return them."""
    locations = weight_locations(model, name)
    for module, attribute in locations:
        parametrize.register_parametrization(module, attribute, parametrization, unsafe=unsafe)
    return locations


def remove_parametrization(locations: Locations) -> None:
    """Undo :func:`parametrize_weight`: every location holds the plain parameter again (its raw values)."""
    for module, attribute in locations:
        parametrize.remove_parametrizations(module, attribute, leave_parametrized=False)
