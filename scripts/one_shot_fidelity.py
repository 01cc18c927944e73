"""Compare the suite's Wanda, SparseGPT and OWL with the official code on identical weights and calibration inputs
(the figures of docs/one-shot.md, "Fidelity to the official code").

    python scripts/one_shot_fidelity.py --wanda CLONE_OF_locuslab/wanda --owl CLONE_OF_luuyin/OWL

The official repositories are read from the given clones at run time (never imported by the suite): single files are
loaded with ``importlib`` under a package alias, with a stub for ``transformers`` (only its ``Conv1D`` class is
named) and for the modules they import but these paths do not use (C4 loading, ablations). A small LLaMA-shaped
decoder (three layers, each a query, output, up and down projection, with a few outlier input features as in LLMs)
is pruned by the official ``prune_wanda``, ``prune_sparsegpt`` and ``prune_wanda_outlier`` end to end, and by the
suite's one-shot pass (:func:`prunebench.run.one_shot.prune_sequentially`, blocks = decoder layers); single layers
(one a convolution, one with unequal column blocks) compare the SparseGPT kernel alone with ``SparseGPT.fasterprune``
on the same Hessian, and Wanda's masks with ``image_classifiers/prune_utils.compute_mask``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import io
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from torch import nn

from prunebench.methods.sparsegpt import SparseGPT
from prunebench.methods.wanda import Wanda, wanda_scores
from prunebench.pruning.calibration import LayerInputs, capture_inputs
from prunebench.pruning.comparison_groups import group_mask
from prunebench.pruning.keep_budget import layer_keep_counts
from prunebench.pruning.obs_reconstruction import sparsegpt_prune
from prunebench.pruning.owl import outlier_ratio, owl_densities
from prunebench.run.one_shot import prune_sequentially

HIDDEN, SEQLEN, SAMPLES, LAYERS = 64, 32, 16, 3
PROJECTIONS = ("q", "o", "up", "down")


# --------------------------------------------------------------------------- loading the official files


def _load(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _stubbed_transformers() -> Iterator[None]:
    stub = types.ModuleType("transformers")
    stub.Conv1D = type("Conv1D", (nn.Module,), {})
    with mock.patch.dict(sys.modules, {"transformers": stub}):
        yield


def official_lib(alias: str, lib: Path, main: str, loaders: list) -> types.ModuleType:
    """``lib/<main>.py`` of an official clone as ``alias.<main>``, its ``get_loaders`` returning ``loaders``."""
    package = types.ModuleType(alias)
    package.__path__ = [str(lib)]
    sys.modules[alias] = package
    data = types.ModuleType(f"{alias}.data")
    data.get_loaders = lambda *args, **kwargs: (loaders, None)
    ablate = types.ModuleType(f"{alias}.ablate")
    ablate.AblateGPT = None
    sys.modules.update({f"{alias}.data": data, f"{alias}.ablate": ablate})
    with _stubbed_transformers():
        for part in ("sparsegpt", "layerwrapper"):
            _load(f"{alias}.{part}", lib / f"{part}.py")
        return _load(f"{alias}.{main}", lib / f"{main}.py")


def official_image_utils(wanda: Path) -> types.ModuleType:
    """``image_classifiers/prune_utils.py`` (it imports its ``layerwrapper`` as a top-level module)."""
    with mock.patch.dict(sys.modules):
        sys.modules["layerwrapper"] = _load("layerwrapper", wanda / "image_classifiers" / "layerwrapper.py")
        return _load("official_image_prune_utils", wanda / "image_classifiers" / "prune_utils.py")


@contextlib.contextmanager
def _cpu_safe() -> Iterator[None]:
    """The official code calls ``torch.cuda.synchronize`` and ``.cuda()``; on a machine without a GPU both are no-ops."""
    if torch.cuda.is_available():
        yield
        return
    with (
        mock.patch.object(torch.cuda, "synchronize", lambda *a, **k: None),
        mock.patch.object(torch.Tensor, "cuda", lambda self, *a, **k: self),
    ):
        yield


# --------------------------------------------------------------------------- the model both sides prune


class DecoderLayer(nn.Module):
    """A LLaMA-shaped layer as the official code reaches it: linear projections, called as
    ``layer(x, attention_mask=..., position_ids=...)[0]``."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.q = nn.Linear(hidden, hidden, bias=False)
        self.o = nn.Linear(hidden, hidden, bias=False)
        self.up = nn.Linear(hidden, 4 * hidden, bias=False)
        self.down = nn.Linear(4 * hidden, hidden, bias=False)

    def forward(self, x, attention_mask=None, position_ids=None):
        h = x + self.o(torch.tanh(self.q(x)))
        return (h + self.down(torch.relu(self.up(h))),)


class Decoder(nn.Module):
    """What ``prune_wanda``/``prune_sparsegpt``/``prune_wanda_outlier`` read of a model (``model.model.layers``,
    ``config``, ``seqlen``, ``hf_device_map``) and the suite's ``pruning_blocks``."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.model = nn.Module()
        self.model.layers = nn.ModuleList(DecoderLayer(HIDDEN) for _ in range(LAYERS))
        self.config = types.SimpleNamespace(use_cache=False, hidden_size=HIDDEN)
        self.seqlen = SEQLEN
        self.hf_device_map: dict = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.model.layers:
            x = layer(x, attention_mask=None, position_ids=None)[0]
        return x

    def pruning_blocks(self) -> list[list[str]]:
        return [[f"model.layers.{i}.{p}.weight" for p in PROJECTIONS] for i in range(LAYERS)]


def calibration(seed: int) -> torch.Tensor:
    """``[SAMPLES, SEQLEN, HIDDEN]`` hidden states with four outlier features (20 times the others' scale)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(SAMPLES, SEQLEN, HIDDEN, generator=generator)
    x[..., :4] *= 20.0
    return x


def _args(**kwargs) -> types.SimpleNamespace:
    return types.SimpleNamespace(nsamples=SAMPLES, seed=0, use_variant=False, model="decoder", **kwargs)


def _weights(model: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if n.endswith(".weight")}


# --------------------------------------------------------------------------- figures


def mask_figures(
    ours: torch.Tensor, theirs: torch.Tensor, score: torch.Tensor | None = None, rowwise: bool = True
) -> str:
    """Agreement of two keep masks; with ``score``, how many disagreements are near-ties: within 1e-5 (relative)
    of the lowest score the official mask keeps in the comparison group (each row, or the layer)."""
    differ = ours != theirs
    text = (
        f"masks equal {100 * (1 - differ.float().mean()):.4f}% ({int(differ.sum())} of {ours.numel()} differ)"
    )
    if score is not None and differ.any():
        kept = torch.where(theirs, score, torch.inf)
        boundary = kept.amin(dim=1, keepdim=True) if rowwise else kept.min()
        gap = ((score - boundary).abs() / boundary.abs().clamp_min(1e-30))[differ]
        text += f", {int((gap < 1e-5).sum())} of them near-ties"
    return text


def weight_figures(ours: torch.Tensor, theirs: torch.Tensor) -> str:
    diff = (ours.double() - theirs.double()).abs()
    relative = float(diff.norm() / theirs.double().norm())
    return f"max |dW| {float(diff.max()):.2e}, relative error {relative:.2e}"


# --------------------------------------------------------------------------- Wanda


def wanda_end_to_end(wanda_lib: Path, sparsity: float, n: int, m: int) -> None:
    """``prune_wanda`` (per output row, or ``n:m``) against the suite's pass at the uniform counts."""
    x = calibration(1)
    dense = Decoder(0)
    ours, theirs = copy.deepcopy(dense), copy.deepcopy(dense)
    prune = official_lib("official_wanda", wanda_lib, "prune", [(s[None],) for s in x])
    with _cpu_safe(), contextlib.redirect_stdout(io.StringIO()):
        prune.prune_wanda(_args(sparsity_ratio=sparsity), theirs, None, torch.device("cpu"), n, m)
    weights = _weights(ours)
    group = f"{m - n}:{m}" if n else "per_output"  # the official prune_n is the number pruned of every m
    counts = layer_keep_counts({k: w.shape for k, w in weights.items()}, sparsity, "uniform")
    result = prune_sequentially(ours, weights, Wanda(), counts, group, [(x, x)])
    official = _weights(theirs)
    print(f"  wanda {group} at {sparsity}:")
    for name, mask in result.masks.items():
        print(f"    {name}: {mask_figures(mask, official[name] != 0)}")


def wanda_image_classifiers(wanda: Path, sparsity: float) -> None:
    """``compute_mask`` of ``image_classifiers/prune_utils.py`` (``row``, ``layer``) on one linear layer with
    ``WrappedLayer`` statistics, against the suite's ``per_output`` and ``per_layer`` masks."""
    utils = official_image_utils(wanda)
    generator = torch.Generator().manual_seed(2)
    layer = nn.Linear(96, 48, bias=False)
    inputs = [torch.randn(4, 50, 96, generator=generator) * torch.linspace(0.2, 5, 96) for _ in range(3)]
    wrapped = utils.WrappedLayer(layer)
    for batch in inputs:
        wrapped.add_batch(batch, None)
    official_score = layer.weight.detach().abs() * wrapped.scaler_row.sqrt().reshape(1, -1)
    rows = torch.cat([b.reshape(-1, 96) for b in inputs])
    ours = wanda_scores(layer.weight.detach(), LayerInputs(len(rows), (rows**2).sum(0), None))
    numel = layer.weight.numel()
    print(f"  image_classifiers compute_mask at {sparsity} (48x96 linear):")
    tied = (official_score * 4).round() / 4  # scores in steps of 1/4: many ties inside each row
    with _cpu_safe():
        row = ~utils.compute_mask(official_score, "row", sparsity)
        tied_row = ~utils.compute_mask(tied, "row", sparsity)
        layer_mask = ~utils.compute_mask(official_score, "layer", sparsity)
    exact = round(numel * (1 - sparsity))
    figures = mask_figures(group_mask(ours, exact, "per_output"), row, official_score)
    print(f"    row vs per_output: {figures}")
    pairs = int((tied.unsqueeze(-1) == tied.unsqueeze(-2)).sum() - tied.numel()) // 2
    figures = mask_figures(group_mask(tied, exact, "per_output"), tied_row)
    print(f"    row vs per_output on the scores rounded to 1/4 ({pairs} tied pairs within rows): {figures}")
    figures = mask_figures(group_mask(ours, exact, "per_layer"), layer_mask, official_score, rowwise=False)
    print(f"    layer vs per_layer: {figures}")
    kept = int(layer_mask.sum())
    figures = mask_figures(group_mask(ours, kept, "per_layer"), layer_mask, official_score, rowwise=False)
    print(f"    layer vs per_layer at the official count ({kept} kept): {figures}")


# --------------------------------------------------------------------------- SparseGPT


def sparsegpt_end_to_end(wanda_lib: Path, sparsity: float, n: int, m: int) -> None:
    """``prune_sparsegpt`` against the suite's pass: at the official code's per-layer counts (its ``<=`` threshold
    prunes one more per column block) for the weights, and at the suite's exact counts for the masks."""
    x = calibration(3)
    dense = Decoder(0)
    theirs = copy.deepcopy(dense)
    prune = official_lib("official_wanda", wanda_lib, "prune", [(s[None],) for s in x])
    with _cpu_safe(), contextlib.redirect_stdout(io.StringIO()):
        prune.prune_sparsegpt(_args(sparsity_ratio=sparsity), theirs, None, torch.device("cpu"), n, m)
    official = _weights(theirs)
    group = f"{m - n}:{m}" if n else "per_layer"
    shapes = {k: w.shape for k, w in official.items()}
    exact = layer_keep_counts(shapes, sparsity, "uniform")
    at_official = {k: int((w != 0).sum()) for k, w in official.items()}
    print(f"  sparsegpt {group} at {sparsity}:")
    for label, counts in (("official counts", at_official), ("exact counts", exact)):
        ours = copy.deepcopy(dense)
        weights = _weights(ours)
        result = prune_sequentially(ours, weights, SparseGPT(), counts, group, [(x, x)])
        for name, mask in result.masks.items():
            text = mask_figures(mask, official[name] != 0)
            if label == "official counts":
                text += f", {weight_figures(weights[name].detach(), official[name])}"
            print(f"    {label} {name} (kept {counts[name]}, official {at_official[name]}): {text}")
        if n:
            break  # an N:M pattern's counts are the same both ways


def _official_fasterprune(sparsegpt: types.ModuleType, layer: nn.Module, hessian: torch.Tensor, **kwargs):
    gpt = sparsegpt.SparseGPT(layer)
    gpt.H = hessian.clone()
    with _cpu_safe():
        gpt.fasterprune(**kwargs)
    return layer.weight.detach().reshape(layer.weight.shape[0], -1)


def sparsegpt_kernels(wanda_lib: Path) -> None:
    """``SparseGPT.fasterprune`` on single layers with its own ``add_batch`` Hessian (a linear layer with column
    blocks of 128, 128 and 64) or, for a convolution (whose unfolding the vendored ``add_batch`` lacks), the suite's
    Hessian of the unfolded patches, against :func:`~prunebench.pruning.obs_reconstruction.sparsegpt_prune` on the
    suite's ``(2 / rows) X^T X``."""
    sparsegpt = official_lib("official_wanda", wanda_lib, "prune", [])  # its SparseGPT is lib/sparsegpt.py's
    generator = torch.Generator().manual_seed(4)
    linear = nn.Linear(320, 48, bias=False)
    batches = [torch.randn(2, 40, 320, generator=generator) * torch.linspace(0.1, 4, 320) for _ in range(8)]
    conv = nn.Conv2d(8, 16, 3, padding=1, bias=False)
    images = [torch.randn(4, 8, 10, 10, generator=generator) for _ in range(4)]
    for label, layer, data in (("linear 48x320", linear, batches), ("conv 16x8x3x3", conv, images)):
        ours_inputs = capture_inputs(layer, ["weight"], data, hessian=True)["weight"]
        hessian = ours_inputs.hessian
        if isinstance(layer, nn.Linear):
            official_gpt = sparsegpt.SparseGPT(layer)
            for batch in data:
                official_gpt.add_batch(batch, None)
            hessian = official_gpt.H
        for n, m in ((0, 0), (2, 4)):
            _kernel_row(label, copy.deepcopy(layer), sparsegpt, hessian, ours_inputs, n, m)


def _kernel_row(
    label: str,
    layer: nn.Module,
    sparsegpt: types.ModuleType,
    hessian: torch.Tensor,
    inputs: LayerInputs,
    n: int,
    m: int,
) -> None:
    dense = layer.weight.detach().reshape(layer.weight.shape[0], -1).clone()
    theirs = _official_fasterprune(sparsegpt, layer, hessian, sparsity=0.5, prune_n=n, prune_m=m)
    kept = theirs != 0
    group = f"{m - n}:{m}" if n else "per_layer"
    new, keep = sparsegpt_prune(dense, inputs.hessian, int(kept.sum()), group)
    text = f"{mask_figures(keep, kept)}, {weight_figures(new, theirs)}"
    if not n:
        _, exact_keep = sparsegpt_prune(dense, inputs.hessian, dense.numel() // 2, group)
        text += f"; at the exact count {dense.numel() // 2}: {mask_figures(exact_keep, kept)}"
    print(f"  fasterprune {label} {group} (official keeps {int(kept.sum())}): {text}")


# --------------------------------------------------------------------------- OWL


def _printed_floats(output: str, label: str) -> list[float]:
    line = next(line for line in output.splitlines() if line.startswith(label))
    inside = line[line.index("[") + 1 : line.index("]")]
    return [float(v) for v in re.split(r"[,\s]+", inside.strip())]


def owl_end_to_end(owl_lib: Path, sparsity: float) -> None:
    """``prune_wanda_outlier`` (its printed ratios and densities) against :func:`outlier_ratio` and
    :func:`owl_densities` on the same dense model and calibration inputs; blocks are the decoder layers."""
    x = calibration(5)
    dense = Decoder(0)
    theirs = copy.deepcopy(dense)
    prune_all = official_lib("official_owl", owl_lib, "prune_all", [(s[None],) for s in x])
    output = io.StringIO()
    args = _args(sparsity_ratio=sparsity, Lamda=0.08, Hyper_m=5.0)
    with _cpu_safe(), contextlib.redirect_stdout(output), np.printoptions(floatmode="unique", precision=17):
        prune_all.prune_wanda_outlier(args, theirs, None, torch.device("cpu"))
    official_ratios = _printed_floats(output.getvalue(), "before adjustment")
    official_densities = _printed_floats(output.getvalue(), "after adjustment")
    weights = _weights(dense)
    inputs = capture_inputs(dense, list(weights), [x])
    blocks = dense.pruning_blocks()
    ratios = {b[0]: outlier_ratio([wanda_scores(weights[n].detach(), inputs[n]) for n in b]) for b in blocks}
    sizes = {b[0]: sum(weights[n].numel() for n in b) for b in blocks}
    densities = owl_densities(ratios, sizes, sparsity)
    from_official = owl_densities(dict(zip(ratios, official_ratios, strict=True)), sizes, sparsity)
    print(f"  owl at {sparsity}, lambda 0.08, M 5 ({LAYERS} blocks of {next(iter(sizes.values()))} weights):")
    print(
        f"    outlier ratios (%): ours {[round(100 * r, 6) for r in ratios.values()]}, official {official_ratios}"
    )
    print(f"    densities: ours {[round(d, 9) for d in densities.values()]}, official {official_densities}")
    gap = max(abs(a - b) for a, b in zip(densities.values(), official_densities, strict=True))
    arithmetic = max(abs(a - b) for a, b in zip(from_official.values(), official_densities, strict=True))
    print(f"    max |density difference| {gap:.2e}; on the official ratios {arithmetic:.2e}")
    realised = {k: float((w != 0).float().mean()) for k, w in _weights(theirs).items()}
    print(f"    official realised layer densities: {[round(v, 6) for v in realised.values()]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wanda", type=Path, required=True, help="a clone of github.com/locuslab/wanda")
    parser.add_argument("--owl", type=Path, required=True, help="a clone of github.com/luuyin/OWL")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    print("Wanda (lib/prune.py prune_wanda, WrappedGPT statistics), decoder of 3 layers, 16 x 32 tokens:")
    wanda_end_to_end(args.wanda / "lib", 0.5, 0, 0)
    wanda_end_to_end(args.wanda / "lib", 0.5, 2, 4)
    wanda_end_to_end(args.wanda / "lib", 0.5, 4, 8)
    wanda_image_classifiers(args.wanda, 0.5)
    print("SparseGPT (lib/sparsegpt.py fasterprune, blocksize 128, percdamp 0.01):")
    sparsegpt_kernels(args.wanda / "lib")
    sparsegpt_end_to_end(args.wanda / "lib", 0.5, 0, 0)
    sparsegpt_end_to_end(args.wanda / "lib", 0.5, 2, 4)
    print("OWL (lib/prune_all.py prune_wanda_outlier):")
    owl_end_to_end(args.owl / "lib", 0.7)


if __name__ == "__main__":
    main()
