"""LoRA / DoRA adapters, 4-bit and 8-bit (QLoRA) loading on the CPU, and gradient checkpointing."""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import BertModel

from mmtune.errors import InputError
from mmtune.models.adapters import (
    apply_lora,
    default_lora_targets,
    enable_gradient_checkpointing,
    load_quantized,
)
from mmtune.models.freezing import apply_freeze
from tests.models.backbones import (
    bert_batch,
    tiny_bert,
    tiny_clip_vision,
    tiny_convnext,
    tiny_siglip_vision,
    tiny_vilt,
    tiny_vit,
    tiny_xlm_roberta,
    train_steps,
)

FAMILIES: dict[str, tuple[Callable[[], nn.Module], list[str]]] = {
    "bert": (tiny_bert, ["query", "value"]),
    "xlm-r": (tiny_xlm_roberta, ["query", "value"]),
    "vilt": (tiny_vilt, ["query", "value"]),
    "clip-vision": (tiny_clip_vision, ["q_proj", "v_proj"]),
    "siglip-vision": (tiny_siglip_vision, ["q_proj", "v_proj"]),
    # transformers 5.23's ViT names its projections q_proj/v_proj (older versions: query/value).
    "vit": (tiny_vit, ["q_proj", "v_proj"]),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_default_lora_targets(family: str) -> None:
    build, expected = FAMILIES[family]
    model = build()
    if family == "vit" and not any(name.endswith("q_proj") for name, _ in model.named_modules()):
        expected = ["query", "value"]
    assert default_lora_targets(model) == expected


def test_no_default_targets_names_the_key() -> None:
    convnext = tiny_convnext(depths=(1, 1))
    with pytest.raises(InputError, match=r"model\.lora\.targets: .*pwconv1, pwconv2"):
        default_lora_targets(convnext)


def test_multihead_attention_out_proj_is_not_adapted() -> None:
    # SigLIP's pooling head is an nn.MultiheadAttention, which would bypass a LoRA on its `out_proj`.
    model = tiny_siglip_vision()
    apply_lora(model, r=2, alpha=4, dropout=0.0, targets=["q_proj", "v_proj", "out_proj"])
    assert hasattr(model.encoder.layers[0].self_attn.out_proj, "lora_A")
    assert not hasattr(model.head.attention.out_proj, "lora_A")


def outputs(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(**bert_batch()).last_hidden_state


@pytest.mark.parametrize("dora", [False, True])
def test_lora_trains_only_adapters_and_starts_as_the_base(dora: bool) -> None:
    base = tiny_bert()
    model = apply_lora(copy.deepcopy(base), r=4, alpha=8, dropout=0.1, targets=None, dora=dora)
    assert type(model) is BertModel and model.config.hidden_size == 32

    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    kinds = {"lora_A", "lora_B"} | ({"lora_magnitude_vector"} if dora else set())
    assert trainable and all(any(f".{kind}." in name for kind in kinds) for name in trainable)
    assert {name.split(".")[-3] for name in trainable} == kinds
    assert {name.split(".")[-4] for name in trainable} == {"query", "value"}
    torch.testing.assert_close(outputs(model), outputs(base), rtol=0, atol=1e-6)  # LoRA B starts at 0

    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    train_steps(model, nn.Linear(32, 2))
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed == trainable


def test_misspelt_target_names_the_key() -> None:
    with pytest.raises(InputError, match=r"model\.lora\.targets: 'valeu' matches no module of BertModel"):
        apply_lora(tiny_bert(), r=4, alpha=8, dropout=0.0, targets=["query", "valeu"])


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"r": 0}, "model.lora.r"), ({"alpha": 0}, "model.lora.alpha"), ({"dropout": 1.0}, "model.lora.dropout"),
])
def test_bad_lora_numbers_name_the_key(kwargs: dict[str, float], key: str) -> None:
    settings = {"r": 4, "alpha": 8, "dropout": 0.0, **kwargs}
    with pytest.raises(InputError, match=key.replace(".", r"\.")):
        apply_lora(tiny_bert(), targets=None, **settings)


def test_applying_lora_twice_is_refused() -> None:
    model = apply_lora(tiny_bert(), r=4, alpha=8, dropout=0.0, targets=None)
    with pytest.raises(InputError, match="already has LoRA adapters"):
        apply_lora(model, r=4, alpha=8, dropout=0.0, targets=None)


@pytest.fixture(scope="module")
def saved_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-bert")
    tiny_bert().save_pretrained(folder)
    return folder


@pytest.mark.parametrize(("bits", "dora"), [(4, False), (4, True), (8, False)])
def test_qlora_trains_one_step_on_the_cpu(saved_bert: Path, bits: int, dora: bool) -> None:
    import bitsandbytes as bnb

    model = load_quantized(BertModel, str(saved_bert), bits=bits, compute_dtype=torch.float32)
    enable_gradient_checkpointing(model)
    quantized = bnb.nn.Linear4bit if bits == 4 else bnb.nn.Linear8bitLt
    assert isinstance(model.encoder.layer[0].attention.self.query, quantized)
    assert not any(p.requires_grad for p in model.parameters())
    assert model.encoder.layer[0].gradient_checkpointing
    apply_lora(model, r=4, alpha=8, dropout=0.0, targets=None, dora=dora)
    assert isinstance(model.encoder.layer[0].attention.self.query.base_layer, quantized)

    # An evaluation between epochs must leave the 4-bit weights in their training layout (see compat.py).
    model.eval()
    with torch.no_grad():
        model(**bert_batch(0))
    query = model.encoder.layer[0].attention.self.query.base_layer
    assert not getattr(getattr(query.weight, "quant_state", None), "packing_format_for_cpu", False)
    model.train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    lora = {name for name, p in model.named_parameters() if p.requires_grad}
    train_steps(model, nn.Linear(32, 2), steps=2)
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed == lora and all("lora_" in name for name in lora)


def test_quantize_errors_name_the_key(saved_bert: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError, match=r"model\.quantize: 3 bits"):
        load_quantized(BertModel, str(saved_bert), bits=3, compute_dtype=torch.float32)
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import now raises ImportError
    with pytest.raises(InputError, match=r"model\.quantize: needs the bitsandbytes package"):
        load_quantized(BertModel, str(saved_bert), bits=4, compute_dtype=torch.float32)


def gradients(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    model.train()
    model.zero_grad()
    output = model(**batch)
    (output.last_hidden_state.pow(2).mean() + output.pooler_output.sum()).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}


def lora_bert() -> nn.Module:
    return apply_lora(tiny_bert(), r=4, alpha=8, dropout=0.0, targets=None)


def full_bert() -> nn.Module:
    return tiny_bert()


def lora_clip() -> nn.Module:
    return apply_lora(tiny_clip_vision(), r=4, alpha=8, dropout=0.0, targets=None)


@pytest.mark.parametrize(("build", "batch"), [
    (lora_bert, bert_batch()), (full_bert, bert_batch()),
    (lora_clip, {"pixel_values": torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))}),
], ids=["lora-bert", "full-bert", "lora-clip-vision"])
def test_gradient_checkpointing_gives_the_same_gradients(build: Callable[[], nn.Module],
                                                         batch: dict[str, torch.Tensor]) -> None:
    plain = build()
    if isinstance(plain, BertModel) and hasattr(plain.encoder.layer[0].attention.self.query, "lora_B"):
        for name, param in plain.named_parameters():  # non-zero B, so that A gets gradients too
            if "lora_B" in name:
                nn.init.normal_(param, std=0.1)
    checkpointed = copy.deepcopy(plain)
    enable_gradient_checkpointing(checkpointed)

    blocks = checkpointed.encoder.layers if hasattr(checkpointed.encoder, "layers") else checkpointed.encoder.layer
    calls: list[int] = []
    # The block's own hooks stay outside the checkpoint (transformers checkpoints `forward`): watch its first child.
    next(blocks[1].children()).register_forward_pre_hook(lambda *_: calls.append(1))
    expected, actual = gradients(plain, batch), gradients(checkpointed, batch)
    assert len(calls) == 2  # the block ran again in backward: checkpointing is really on
    assert expected.keys() == actual.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=1e-5, msg=name)


def test_gradient_checkpointing_does_not_backpropagate_into_frozen_embeddings() -> None:
    model = tiny_bert()
    apply_freeze(model, "last_n", last_n=1)
    enable_gradient_checkpointing(model)
    seen: list[bool] = []
    model.embeddings.register_forward_hook(lambda _module, _inputs, output: seen.append(output.requires_grad))
    gradients(model, bert_batch())
    assert seen == [False]


def test_gradient_checkpointing_before_lora_on_a_frozen_base() -> None:
    # The order a quantized load takes: everything frozen, checkpointing on, then adapters.
    model = tiny_bert()
    apply_freeze(model, "all")
    enable_gradient_checkpointing(model)
    apply_lora(model, r=4, alpha=8, dropout=0.0, targets=None)
    calls: list[int] = []
    model.encoder.layer[1].attention.register_forward_pre_hook(lambda *_: calls.append(1))
    grads = gradients(model, bert_batch())
    assert len(calls) == 2 and grads and all("lora_" in name for name in grads)


def test_gradient_checkpointing_refuses_plain_modules() -> None:
    with pytest.raises(InputError, match=r"model\.gradient_checkpointing: Sequential does not support it"):
        enable_gradient_checkpointing(nn.Sequential(nn.Linear(2, 2)))
