"""The prunable set, the same for every method, and where its weights live in a model.

What is pruned, in module order, keyed as in ``model.named_parameters()``:

* the weight of every Linear and Conv layer (``nn.Linear`` and its subclasses, such as the ``out_proj`` of
  ``nn.MultiheadAttention``; every ``nn.Conv*d`` and transposed convolution), first and last included;
* the query, key and value projections of every ``nn.MultiheadAttention``: the packed ``in_proj_weight`` (one
  ``3E x E`` matrix, as PyTorch and timm's ViT compute Q, K and V with one matrix product; it is one layer for the
  layer-wise scopes), or ``q_proj_weight``, ``k_proj_weight`` and ``v_proj_weight`` when the key and value sizes
  differ from the embedding size (three layers); models with separate Q/K/V ``nn.Linear`` layers (BERT, Hugging Face's
  ViT) have three layers per attention block, as in the movement-pruning paper;
* the weight of every ``nn.Embedding`` only with ``prune_embeddings=True``. It is off by default, as in movement
  pruning (Sanh et al. 2020), which prunes BERT's encoder and leaves its embeddings dense. A parameter that is also an
  embedding's weight (an output layer tied to the input embedding) follows this rule, since masking it masks the
  embedding.

Biases, normalization parameters, class tokens and position embeddings held as bare parameters are never pruned.
``keep_first_dense`` / ``keep_last_dense`` remove the first or last weight of the set for every method alike (the run
records them). :func:`prunable_set` lists every parameter with what happens to it, so nothing is left out silently.

**Tied parameters** (``b.weight = a.weight``) are one weight: counted once in the budget, scored once, and keyed by
the first name ``model.named_parameters()`` gives them (which lists each parameter once;
``named_parameters(remove_duplicate=False)`` shows the other names). :func:`parameter_names` maps every name of a
parameter to that key, so masks keyed by any of its names apply (:mod:`prunebench.pruning.mask_application`), and
:func:`weight_locations` gives every module attribute holding it, so that a method's parametrization covers every use.

**Parametrized weights are refused**, with a one-line :class:`~prunebench.core.errors.UsageError` that names the fix. A
method scores, masks and keeps at zero the tensor a layer multiplies; under a reparametrization the layer multiplies
``f(theta)`` instead, and a mask on ``theta`` does not in general zero ``f(theta)`` (``torch.nn.utils.parametrize``,
e.g. an orthogonal map), nor can a mask on ``f(theta)`` be enforced after an optimizer step on ``theta``; the
during-training methods also register their own parametrization, which would compose with the user's. So a weight
under ``torch.nn.utils.parametrize`` (``parametrizations.weight_norm``, ``spectral_norm``, ``orthogonal``), under the
hook-based ``torch.nn.utils.weight_norm`` or ``spectral_norm``, or carrying a ``torch.nn.utils.prune`` mask, raises,
saying how to turn it back into a plain parameter (which for ``torch.nn.utils.prune`` makes its pruning permanent).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils import prune as torch_prune
from torch.nn.utils.spectral_norm import SpectralNorm
from torch.nn.utils.weight_norm import WeightNorm

from prunebench.core.errors import UsageError

PRUNABLE_TYPES = (nn.Linear, nn.modules.conv._ConvNd)
"""Layers whose ``weight`` is always prunable (attention projections and embeddings are handled apart)."""


@dataclass(frozen=True)
class ParameterEntry:
    """One parameter of a model and what the prunable set does with it (:func:`prunable_set`)."""

    name: str
    """Its key in ``model.named_parameters()`` (and in the masks)."""
    shape: tuple[int, ...]
    size: int
    pruned: bool
    kind: str
    """What it is: ``Linear``, ``Conv2d``, ``attention Q/K/V (packed)``, ``Embedding``, ``bias``, ..."""
    reason: str = ""
    """Why it is left out (empty when pruned)."""
    aliases: tuple[str, ...] = ()
    """Its other names when it is tied (``named_parameters(remove_duplicate=False)``)."""


def _candidates(module: nn.Module, prune_embeddings: bool) -> list[tuple[str, str, bool]]:
    """``(attribute, kind, prunable)`` of the weight-like attributes of ``module`` (not of its children)."""
    if isinstance(module, nn.modules.linear.NonDynamicallyQuantizableLinear):
        return [("weight", "attention output (Linear)", True)]
    if isinstance(module, PRUNABLE_TYPES):
        return [("weight", type(module).__name__, True)]
    if isinstance(module, nn.MultiheadAttention):
        if module._qkv_same_embed_dim:
            return [("in_proj_weight", "attention Q/K/V (packed)", True)]
        return [(f"{p}_proj_weight", f"attention {p.upper()}", True) for p in "qkv"]
    if isinstance(module, nn.Embedding):
        return [("weight", "Embedding", prune_embeddings)]
    return []


def _refuse_reparametrized(module: nn.Module, module_name: str, attribute: str) -> None:
    """A one-line error if ``module.<attribute>`` is not a plain parameter (see the module docstring)."""
    where = f"{module_name}.{attribute}" if module_name else attribute
    if parametrize.is_parametrized(module, attribute):
        kinds = ", ".join(type(p).__name__ for p in module.parametrizations[attribute])
        raise UsageError(
            f"{where} is parametrized ({kinds}); prune a plain weight: call "
            f"torch.nn.utils.parametrize.remove_parametrizations(module, {attribute!r}) first"
        )
    value = getattr(module, attribute, None)
    if value is None or isinstance(value, nn.Parameter):
        return
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, torch_prune.BasePruningMethod) and hook._tensor_name == attribute:
            fix = (
                f"torch.nn.utils.prune.remove(module, {attribute!r}) first (it makes that pruning permanent)"
            )
        elif isinstance(hook, WeightNorm) and hook.name == attribute:
            fix = f"torch.nn.utils.remove_weight_norm(module, {attribute!r}) first"
        elif isinstance(hook, SpectralNorm) and hook.name == attribute:
            fix = f"torch.nn.utils.remove_spectral_norm(module, {attribute!r}) first"
        else:
            continue
        raise UsageError(
            f"{where} is recomputed by a {type(hook).__name__} hook; prune a plain weight: call {fix}"
        )
    raise UsageError(
        f"{where} is not a parameter ({type(value).__name__} set outside the module's parameters); "
        "prune a model whose weights are plain parameters"
    )


def _walk(model: nn.Module, prune_embeddings: bool) -> dict[str, tuple[str, bool]]:
    """Every weight-like parameter in module order: name -> (kind, prunable), tied ones once under their first name."""
    first_name = {id(p): name for name, p in model.named_parameters()}
    found: dict[str, tuple[str, bool]] = {}
    embeddings: set[str] = set()
    for module_name, module in model.named_modules():
        for attribute, kind, prunable in _candidates(module, prune_embeddings):
            if prunable:
                _refuse_reparametrized(module, module_name, attribute)
            parameter = module._parameters.get(attribute)
            if parameter is None:  # an unused projection, or a reparametrized embedding that is not pruned
                continue
            name = first_name[id(parameter)]
            if kind == "Embedding":
                embeddings.add(name)
            if name not in found:
                found[name] = (kind, prunable)
    for name in embeddings:  # a weight tied to an embedding is an embedding matrix
        found[name] = (found[name][0], prune_embeddings)
    return found


def prunable_weights(
    model: nn.Module,
    *,
    keep_first_dense: bool = False,
    keep_last_dense: bool = False,
    prune_embeddings: bool = False,
) -> dict[str, nn.Parameter]:
    """The prunable weights of ``model`` in module order, keyed as in ``model.named_parameters()``.

    Raises :class:`~prunebench.core.errors.UsageError` for a parametrized weight (module docstring).
    """
    parameters = dict(model.named_parameters())
    weights = {
        name: parameters[name] for name, (_, prunable) in _walk(model, prune_embeddings).items() if prunable
    }
    names = list(weights)
    if keep_first_dense and names:
        del weights[names[0]]
    if keep_last_dense and len(names) > 1:
        del weights[names[-1]]
    return weights


def parameter_names(model: nn.Module) -> dict[str, str]:
    """Every name of every parameter (tied ones included) -> its key, the first name ``named_parameters()`` gives."""
    first_name: dict[int, str] = {}
    names: dict[str, str] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        names[name] = first_name.setdefault(id(parameter), name)
    return names


def weight_locations(model: nn.Module, name: str) -> list[tuple[nn.Module, str]]:
    """Every ``(module, attribute)`` holding the parameter keyed ``name`` (several when it is tied)."""
    key = parameter_names(model)[name]
    locations: list[tuple[nn.Module, str]] = []
    seen: set[tuple[int, str]] = set()
    for alias, target in parameter_names(model).items():
        if target != key:
            continue
        path, _, attribute = alias.rpartition(".")
        module = model.get_submodule(path) if path else model
        if (id(module), attribute) not in seen:
            seen.add((id(module), attribute))
            locations.append((module, attribute))
    return locations


def prunable_set(
    model: nn.Module,
    *,
    prune_embeddings: bool = False,
    keep_first_dense: bool = False,
    keep_last_dense: bool = False,
) -> list[ParameterEntry]:
    """Every parameter of ``model``: the prunable weights first (in module order), then the others, with the reason
    each is left out. Works on the ``meta`` device (shapes only)."""
    parameters = dict(model.named_parameters())
    aliases: dict[str, list[str]] = {}
    for alias, key in parameter_names(model).items():
        if alias != key:
            aliases.setdefault(key, []).append(alias)
    walked = _walk(model, prune_embeddings)
    kept = prunable_weights(
        model,
        keep_first_dense=keep_first_dense,
        keep_last_dense=keep_last_dense,
        prune_embeddings=prune_embeddings,
    )

    def entry(name: str, pruned: bool, kind: str, reason: str = "") -> ParameterEntry:
        shape = tuple(parameters[name].shape)
        return ParameterEntry(
            name, shape, parameters[name].numel(), pruned, kind, reason, tuple(aliases.get(name, ()))
        )

    entries = [entry(name, True, walked[name][0]) for name in kept]
    for name in parameters:
        if name in kept:
            continue
        if name in walked:
            kind, prunable = walked[name]
            if prunable:
                reason = "kept dense (keep_first_dense / keep_last_dense)"
            else:
                reason = "an embedding (pruned with prune_embeddings=True)"
            entries.append(entry(name, False, kind, reason))
        elif parameters[name].dim() <= 1:
            entries.append(entry(name, False, "bias or normalization", "never pruned"))
        else:
            entries.append(entry(name, False, "other", "not a Conv, Linear, attention or embedding weight"))
    return entries
