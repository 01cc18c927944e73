"""What would fail every run is refused before any run, in one line with exit status 2 and no record: a model that
cannot take the data or does not return one logit per class, a structured method that needs BatchNorm on a model
without, ``--loader ffcv`` on data never read through FFCV. And errors that are one line, not a traceback: a model
factory that returns no module, an image that does not decode, an unknown Hugging Face model type or key."""

from __future__ import annotations

import functools
import textwrap

import numpy as np
import pytest
import torch

from prunebench.cli import main
from prunebench.core.errors import UsageError

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ["--seeds", "1", "--epochs", "2"]


def _refused(capsys, argv: list[str], out) -> str:
    """The one error line of ``bench argv``, which must exit 2 and leave no record in ``out``."""
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not list(out.glob("runs/*.json"))
    return err


@pytest.fixture
def user_models(tmp_path, monkeypatch):
    """A module of model factories the user wrote: one returns no module, one ignores the class count."""
    (tmp_path / "my_models.py").write_text(
        textwrap.dedent(
            """
            import math
            from torch import nn

            def not_a_module(input_shape, num_classes):
                return {"layers": 3}

            def thousand_classes(input_shape, num_classes):
                return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 1000))
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_models"


def test_a_model_that_cannot_take_the_input_size_is_refused_up_front(capsys, tmp_path):
    # torchvision's ViT-B/16 checks that its images are 224x224; synthetic's are 16x16
    argv = ["run", "--preset", "synthetic-tiny", "--model", "torchvision:vit_b_16", "--methods", "magnitude"]
    err = _refused(capsys, [*argv, "--scopes", "global", "--sparsity", "0.9", *FAST], tmp_path / "out")
    assert "torchvision:vit_b_16 cannot take the inputs of synthetic (shape (1, 16, 16))" in err
    assert "Expected 224 but got 16" in err


@pytest.mark.parametrize("track", ["unstructured", "structured"])
def test_a_model_whose_output_width_is_not_the_class_count_is_refused(capsys, tmp_path, user_models, track):
    argv = [
        "run",
        "--preset",
        "synthetic-tiny",
        "--model",
        f"{user_models}:thousand_classes",
        "--track",
        track,
    ]
    argv += (
        ["--methods", "magnitude", "--scopes", "global", "--sparsity", "0.9"]
        if track == "unstructured"
        else ["--methods", "l1_filter"]
    )
    err = _refused(capsys, [*argv, *FAST], tmp_path / "out")
    assert "outputs of shape (1000,) per example on synthetic, which has 4 classes" in err


@pytest.mark.parametrize("track", ["unstructured", "structured"])
def test_a_factory_that_returns_no_module_is_one_line(capsys, tmp_path, user_models, track):
    argv = ["run", "--preset", "synthetic-tiny", "--model", f"{user_models}:not_a_module", "--track", track]
    argv += (
        ["--methods", "magnitude", "--scopes", "global", "--sparsity", "0.9"]
        if track == "unstructured"
        else ["--methods", "l1_filter"]
    )
    err = _refused(capsys, [*argv, *FAST], tmp_path / "out")
    assert f"model {user_models}:not_a_module returned a dict, not a torch.nn.Module" in err


def test_batchnorm_methods_on_a_model_without_batchnorm_are_refused_up_front(capsys, tmp_path):
    argv = ["run", "--track", "structured", "--preset", "synthetic-tiny", "--methods", "all", *FAST]
    err = _refused(capsys, argv, tmp_path / "out")
    # LeNet-5 has four channel groups (conv 6, conv 16, fc 120, fc 84), none with a BatchNorm
    assert "masksparsity and slimming score BatchNorm scales, but 4 of the 4 channel groups of lenet5" in err
    assert "l1_filter, taylor" in err


def test_the_models_of_a_grid_are_checked_once_per_dataset_and_model(monkeypatch):
    import prunebench.zoo.model_zoo
    from prunebench.grid.experiment import Experiment
    from prunebench.grid.grid_choices import check_models

    calls = []
    original = prunebench.zoo.model_zoo.check_model_fits

    def counted(*args):
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(prunebench.zoo.model_zoo, "check_model_fits", counted)
    experiment = Experiment(
        track="structured", preset="synthetic-tiny", model="cnn_bn", methods="all", target="channels:0.3,0.5"
    )
    configs = experiment.configs()
    assert len(configs) == 3 * (1 + 4 * 2 * 2)  # seeds x (dense + 4 methods x 2 scopes x 2 targets)
    check_models(configs)  # cnn_bn has a BatchNorm in every group: every structured method may run on it
    assert calls == [("cnn_bn", (1, 16, 16), 4, "synthetic")]


def test_the_dry_forward_runs_on_the_meta_device():
    from prunebench.zoo.model_zoo import check_model_fits

    model, inputs = check_model_fits("lenet5", (1, 16, 16), 4, "synthetic")
    assert inputs.is_meta and inputs.shape == (2, 1, 16, 16)
    assert all(p.is_meta for p in model.parameters())


@pytest.mark.parametrize("dataset", ["synthetic", "mnist5k"])
def test_loader_ffcv_on_an_in_memory_dataset_is_refused(capsys, tmp_path, dataset):
    argv = [
        "run",
        "--dataset",
        dataset,
        "--loader",
        "ffcv",
        "--methods",
        "magnitude",
        "--sparsity",
        "0.9",
        *FAST,
    ]
    err = _refused(capsys, argv, tmp_path / "out")
    assert f"--loader ffcv: {dataset} is held in memory, never read through FFCV" in err


def test_loader_ffcv_on_a_factory_dataset_is_refused(tmp_path, monkeypatch):
    from prunebench.datasets import get_dataset
    from prunebench.datasets.dataset_registry import LoaderRequest

    (tmp_path / "my_data.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch.utils.data import TensorDataset

            def tiny():
                data = TensorDataset(torch.zeros(4, 3), torch.tensor([0, 1, 0, 1]))
                return data, data
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = get_dataset("my_data:tiny")
    spec.check(LoaderRequest(batch_size=2, seed=0, device=torch.device("cpu"), loader="auto"))
    with pytest.raises(
        UsageError, match="my_data:tiny is read from its factory's datasets, never read through FFCV"
    ):
        spec.check(LoaderRequest(batch_size=2, seed=0, device=torch.device("cpu"), loader="ffcv"))


@pytest.mark.parametrize("dataset", ["synthetic", "mnist5k"])
def test_data_prepare_refuses_a_dataset_nothing_reads_through_ffcv(capsys, tmp_path, dataset):
    assert main(["data", "prepare", dataset, "--out", str(tmp_path / "ffcv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{dataset} is never read through FFCV" in err
    assert "cifar10, cifar100, imagenet" in err
    assert not (tmp_path / "ffcv").exists()


@pytest.fixture
def broken_image_folder(tmp_path):
    """An ImageFolder with one file in train/ that is no image."""
    from PIL import Image

    generator = np.random.default_rng(0)
    for split in ("train", "val"):
        for label in ("a", "b"):
            folder = tmp_path / "images" / split / label
            folder.mkdir(parents=True)
            for i in range(3):
                pixels = generator.integers(0, 255, (20, 20, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    broken = tmp_path / "images" / "train" / "a" / "broken.png"
    broken.write_bytes(b"not an image")
    return tmp_path / "images", broken


@pytest.mark.parametrize("workers", [0, 1])
def test_an_image_that_does_not_decode_is_one_line_naming_the_file(broken_image_folder, workers):
    from prunebench.datasets.imagenet import eval_transform, imagenet_samples
    from prunebench.datasets.torch_loaders import DecodedImages, TorchBatches

    root, broken = broken_image_folder
    images = DecodedImages(
        imagenet_samples(root, "train"), functools.partial(eval_transform, size=16), seed=0
    )
    batches = TorchBatches(images, 4, shuffle=False, seed=0, num_workers=workers)
    with pytest.raises(UsageError) as caught:
        list(batches)
    message = str(caught.value)
    assert message.startswith(f"image {broken} cannot be decoded (UnidentifiedImageError")
    assert "\n" not in message


def test_a_harness_run_over_an_undecodable_image_records_one_line(broken_image_folder, tmp_path):
    import dataclasses

    from prunebench.run.run_config import RunConfig
    from prunebench.run.runner import run_or_record_failure

    root, broken = broken_image_folder
    config = RunConfig.from_preset("synthetic-tiny", "dense", "none", 0.0, 0, epochs=2)
    config = dataclasses.replace(config, dataset=f"imagefolder:{root}:16")
    record = run_or_record_failure(config, torch.device("cpu"), tmp_path)
    assert record["status"] == "failed"
    assert (
        record["error"].startswith(f"UsageError: image {broken} cannot be decoded")
        and "\n" not in record["error"]
    )


class TestHuggingFace:
    @pytest.fixture(autouse=True)
    def _transformers(self):
        pytest.importorskip("transformers")

    def test_an_unknown_model_type_suggests_the_closest_names(self):
        from prunebench.zoo.hf_models import build_config

        with pytest.raises(UsageError) as caught:
            build_config("hf:bret")
        message = str(caught.value)
        assert "unknown Hugging Face model type 'bret'; closest: bert" in message
        assert len(message.split(", ")) <= 6 and "\n" not in message  # five names at most, not the ~800 types

    def test_a_typo_in_a_configuration_key_is_refused_with_the_intended_key(self):
        from prunebench.zoo.hf_models import build_config

        with pytest.raises(
            UsageError, match="bert has no configuration key 'hiden_size'; did you mean hidden_size"
        ):
            build_config("hf:bert,hiden_size=64,num_hidden_layers=2")

    def test_aliases_and_properties_of_a_configuration_are_keys(self):
        from prunebench.zoo.hf_models import build_config

        # GPT-2 names its width n_embd; hidden_size is its documented alias (attribute_map)
        assert build_config("hf:gpt2,hidden_size=64").n_embd == 64
        assert build_config("hf:bert,num_labels=3").num_labels == 3
