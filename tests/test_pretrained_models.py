"""Pretrained starting points: tiny torchvision, Hugging Face and user models saved in a temporary directory load
offline bit for bit, their weights' hash is part of the run id, and the schedules start from the given weights."""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import textwrap

import pytest
import torch

from prunebench.core.errors import UsageError
from prunebench.pruning.allocation import keep_budget
from prunebench.pruning.saved_masks import MASK_KEY, unpack
from prunebench.run.run_config import RunConfig
from prunebench.run.run_context import RunContext, initial_model
from prunebench.run.runner import execute
from prunebench.zoo.model_zoo import build_model, check_model_fits, get_model, pretrained_digest

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE, CLASSES = (1, 16, 16), 4  # the synthetic data's


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_same_state(actual: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    state = actual.state_dict()
    assert state.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(state[name], tensor), name


def synthetic_config(model: str, method: str = "magnitude", scope: str = "global") -> RunConfig:
    config = RunConfig.from_preset("synthetic-tiny", method, scope, 0.9, seed=0)
    return dataclasses.replace(config, model=model)


# torchvision ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory):
    """A ResNet-18 for the synthetic data (one channel, four classes) saved as a state dict."""
    torch.manual_seed(3)
    model = build_model("torchvision:resnet18", SHAPE, CLASSES)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pt"
    torch.save(model.state_dict(), path)
    return path, model.state_dict()


def test_a_torchvision_state_dict_file_loads_bit_equal(resnet_file):
    path, saved = resnet_file
    torch.manual_seed(0)  # another seed: the initialization must not show through
    assert_same_state(build_model(f"torchvision:resnet18@{path}", SHAPE, CLASSES), saved)
    assert pretrained_digest(f"torchvision:resnet18@{path}", SHAPE, CLASSES) == sha256(path)
    assert pretrained_digest("torchvision:resnet18", SHAPE, CLASSES) is None
    check_model_fits(f"torchvision:resnet18@{path}", SHAPE, CLASSES, "synthetic")  # the dry forward on meta


def test_a_safetensors_file_loads_bit_equal(resnet_file, tmp_path):
    save_file = pytest.importorskip("safetensors.torch").save_file  # with the hf extra

    _, saved = resnet_file
    path = tmp_path / "resnet18.safetensors"
    save_file({name: tensor.contiguous() for name, tensor in saved.items()}, str(path))
    assert_same_state(build_model(f"torchvision:resnet18@{path}", SHAPE, CLASSES), saved)


def test_a_torchvision_weights_enum_loads_from_the_hub_cache_only(tmp_path, monkeypatch):
    from torchvision.models import SqueezeNet1_1_Weights, squeezenet1_1

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / SqueezeNet1_1_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[1]
    with pytest.raises(UsageError) as caught:
        build_model("torchvision:squeezenet1_1@IMAGENET1K_V1", (3, 32, 32), CLASSES)
    assert str(expected) in str(caught.value) and "\n" not in str(caught.value)
    # an ImageNet checkpoint (1000 classes) in the cache: every tensor but the classifier is the file's
    torch.manual_seed(1)
    imagenet = squeezenet1_1(num_classes=1000).state_dict()
    expected.parent.mkdir(parents=True)
    torch.save(imagenet, expected)
    model = build_model("torchvision:squeezenet1_1@IMAGENET1K_V1", (3, 32, 32), CLASSES)
    for name, tensor in model.state_dict().items():
        if name.startswith("classifier.1."):
            assert tensor.shape[0] == CLASSES  # rebuilt for the data's class count
        else:
            assert torch.equal(tensor, imagenet[name]), name
    assert pretrained_digest("torchvision:squeezenet1_1@IMAGENET1K_V1", (3, 32, 32), CLASSES) == sha256(
        expected
    )
    with pytest.raises(UsageError, match="has no weights 'IMAGENET9K'"):
        get_model("torchvision:squeezenet1_1@IMAGENET9K")


def test_weights_that_do_not_fit_the_model_are_refused_in_one_line(resnet_file, tmp_path):
    _, saved = resnet_file
    path = tmp_path / "partial.pt"
    torch.save({k: v for k, v in saved.items() if k != "fc.weight"}, path)
    with pytest.raises(UsageError, match=r"1 of the model's tensors missing \(e.g. fc.weight\)"):
        build_model(f"torchvision:resnet18@{path}", SHAPE, CLASSES)
    with pytest.raises(UsageError, match="no such weights file"):
        build_model(f"torchvision:resnet18@{tmp_path / 'absent.pt'}", SHAPE, CLASSES)


def test_changing_one_weight_changes_the_run_id(resnet_file, tmp_path):
    _, saved = resnet_file
    path = tmp_path / "weights.pt"
    torch.save(saved, path)
    name = f"torchvision:resnet18@{path}"
    first = synthetic_config(name)
    assert first.identity["weights"] == sha256(path)
    assert "weights" not in synthetic_config("torchvision:resnet18").identity  # so no existing run id changes
    changed = {k: v.clone() for k, v in saved.items()}
    changed["fc.bias"][0] += 1e-3
    torch.save(changed, path)
    second = synthetic_config(name)
    assert second.identity["weights"] == sha256(path) != first.identity["weights"]
    assert second.run_id != first.run_id


# Hugging Face --------------------------------------------------------------------------------------------------
@pytest.fixture
def transformers():
    """The Hugging Face tests skip without transformers (the optional ``hf`` extra)."""
    return pytest.importorskip("transformers")


def test_a_saved_bert_loads_offline_bit_equal(transformers, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=16,
        num_labels=CLASSES,
    )
    torch.manual_seed(0)
    saved = transformers.BertForSequenceClassification(config)
    saved.save_pretrained(tmp_path / "bert")
    torch.manual_seed(1)
    model = build_model(f"hf:{tmp_path / 'bert'}", (16,), CLASSES)
    assert isinstance(model.model, transformers.BertForSequenceClassification)
    assert_same_state(model.model, saved.state_dict())
    weights = tmp_path / "bert" / "model.safetensors"
    assert pretrained_digest(f"hf:{tmp_path / 'bert'}", (16,), CLASSES) == sha256(weights)
    assert pretrained_digest("hf:bert,hidden_size=32", (16,), CLASSES) is None


def test_a_saved_gpt2_loads_as_a_causal_lm_returning_logits_per_token(transformers, tmp_path):
    config = transformers.GPT2Config(vocab_size=40, n_embd=32, n_layer=2, n_head=2, n_positions=16)
    torch.manual_seed(0)
    saved = transformers.GPT2LMHeadModel(config)
    saved.save_pretrained(tmp_path / "gpt")
    model = build_model(f"hf:{tmp_path / 'gpt'}", (8,), 40)
    assert isinstance(model.model, transformers.GPT2LMHeadModel)
    assert_same_state(model.model, saved.state_dict())
    tokens = torch.randint(0, 40, (3, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model.eval()(tokens), saved.eval()(input_ids=tokens).logits)
    assert model(tokens).shape == (3, 8, 40)
    check_model_fits(f"hf:{tmp_path / 'gpt'}", (8,), 40, "text")
    with pytest.raises(UsageError, match="vocabulary has 40 tokens, the data's 65"):
        build_model(f"hf:{tmp_path / 'gpt'}", (8,), 65)
    # a causal LM from a configuration: its vocabulary is the data's
    assert build_model("hf:gpt2,n_embd=32,n_layer=1,n_head=2,task=causal-lm", (8,), 65)(tokens).shape == (
        3,
        8,
        65,
    )


def test_a_hub_id_is_read_from_the_hugging_face_cache_and_never_downloaded(
    transformers, tmp_path, monkeypatch
):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(UsageError) as caught:
        get_model("hf:someone/tiny-bert")
    assert str(tmp_path) in str(caught.value) and "\n" not in str(caught.value)
    # the cache's layout: models--OWNER--NAME/refs/main names the snapshot that holds the files
    entry = tmp_path / "models--someone--tiny-bert"
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text("0" * 40)
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    torch.manual_seed(0)
    saved = transformers.BertForSequenceClassification(config)
    saved.save_pretrained(entry / "snapshots" / ("0" * 40))
    model = build_model("hf:someone/tiny-bert", (16,), 2)
    assert_same_state(model.model, saved.state_dict())


# A user's factory ----------------------------------------------------------------------------------------------
@pytest.fixture
def trained_factory(tmp_path, monkeypatch):
    """A module ``trained_nets`` whose factory ``mlp`` returns the weights of ``mlp.pt`` and declares so."""
    torch.manual_seed(7)
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(256, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)
    )
    torch.save(net.state_dict(), tmp_path / "mlp.pt")
    (tmp_path / "trained_nets.py").write_text(
        textwrap.dedent(
            f"""
            import torch

            def mlp(input_shape, num_classes):
                net = torch.nn.Sequential(
                    torch.nn.Flatten(), torch.nn.Linear(256, 32), torch.nn.ReLU(), torch.nn.Linear(32, num_classes)
                )
                net.load_state_dict(torch.load({str(tmp_path / "mlp.pt")!r}))
                return net

            mlp.pretrained = True

            def fresh(input_shape, num_classes):
                return mlp(input_shape, num_classes)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "trained_nets:mlp", net.state_dict(), tmp_path / "mlp.pt"
    sys.modules.pop("trained_nets", None)


def test_a_factory_that_declares_trained_weights_hashes_its_state(trained_factory):
    name, saved, path = trained_factory
    identity = synthetic_config(name).identity
    assert "weights" in identity and "weights" not in synthetic_config("trained_nets:fresh").identity
    changed = {k: v.clone() for k, v in saved.items()}
    changed["3.bias"][1] = 0.5
    torch.save(changed, path)
    from prunebench.zoo.pretrained import _factory_digest

    _factory_digest.cache_clear()  # the file changed within the process; a new process reads it anew
    assert synthetic_config(name).identity["weights"] != identity["weights"]


def test_an_after_training_method_prunes_exactly_the_given_weights(trained_factory, tmp_path):
    name, saved, _ = trained_factory
    config = synthetic_config(name, "magnitude", "global")
    record = execute(config, torch.device("cpu"), tmp_path / "cache")
    masks = unpack(record[MASK_KEY])
    # global magnitude on the saved weights, by hand: the keep_budget largest |w| over both layers
    weights = torch.cat([saved["1.weight"].abs().flatten(), saved["3.weight"].abs().flatten()])
    threshold = weights.topk(keep_budget(weights.numel(), 0.9)).values[-1]
    for layer in ("1.weight", "3.weight"):
        expected = (saved[layer].abs() >= threshold).numpy()
        assert (masks[layer] == expected).all(), layer
    assert not list((tmp_path / "cache").glob("dense-*"))  # nothing was pre-trained or cached


def test_dense_starts_from_the_given_weights_and_at_init_methods_refuse(trained_factory, tmp_path):
    name, saved, _ = trained_factory
    dense = synthetic_config(name, "dense")
    assert_same_state(initial_model(dense, torch.device("cpu")), saved)
    ctx = RunContext(synthetic_config(name), torch.device("cpu"), tmp_path)
    assert (
        ctx.pretrained
        and not RunContext(synthetic_config("lenet5"), torch.device("cpu"), tmp_path).pretrained
    )
    with pytest.raises(UsageError, match="snip prunes at initialization") as caught:
        execute(synthetic_config(name, "snip"), torch.device("cpu"), tmp_path / "cache")
    assert "\n" not in str(caught.value)
