"""ViT parity with transformers on tiny random checkpoints: base model, classifier, interpolated positions."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

import pretrained  # noqa: E402
from pretrained.errors import InputError  # noqa: E402

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, image_size=30,
            patch_size=10, num_labels=3, layer_norm_eps=1e-12)


def _close(a, b):
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def vit_folders(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("vit")
    config = transformers.ViTConfig(**TINY)
    transformers.ViTModel(config).save_pretrained(root / "base")
    head = transformers.ViTForImageClassification(config)
    with torch.no_grad():  # a non-zero classifier bias: the head really loads it
        head.classifier.bias.normal_()
    head.save_pretrained(root / "cls")
    return root


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_vit_model_parity(vit_folders, attn):
    ref = transformers.ViTModel.from_pretrained(vit_folders / "base", attn_implementation=attn).eval()
    ours = pretrained.AutoModel.from_pretrained(vit_folders / "base", attn_implementation=attn)
    assert type(ours).__name__ == "ViTModel"
    x = torch.randn(2, 3, 30, 30)
    with torch.no_grad():
        a = ref(x, output_hidden_states=True, output_attentions=attn == "eager")
        b = ours(x, output_hidden_states=True, output_attentions=attn == "eager")
    _close(b.last_hidden_state, a.last_hidden_state)
    _close(b.pooler_output, a.pooler_output)
    assert len(b.hidden_states) == len(a.hidden_states) == TINY["num_hidden_layers"] + 1
    for x_ours, x_ref in zip(b.hidden_states, a.hidden_states):
        _close(x_ours, x_ref)
    if attn == "eager":
        for w_ours, w_ref in zip(b.attentions, a.attentions):
            _close(w_ours, w_ref)


def test_vit_classifier_parity_loss_and_interpolation(vit_folders):
    ref = transformers.ViTForImageClassification.from_pretrained(vit_folders / "cls").eval()
    ours = pretrained.AutoModelForImageClassification.from_pretrained(vit_folders / "cls")
    x, labels = torch.randn(3, 3, 30, 30), torch.tensor([0, 2, 1])
    with torch.no_grad():
        a, b = ref(x, labels=labels), ours(x, labels=labels)
        _close(b.logits, a.logits)
        _close(b.loss, a.loss)
        for shape in [(40, 40), (30, 50), (20, 30)]:  # larger, wider and smaller grids than the 3x3 trained
            big = torch.randn(2, 3, *shape)
            _close(ours(big, interpolate_pos_encoding=True).logits, ref(big, interpolate_pos_encoding=True).logits)
    with pytest.raises(InputError, match="interpolate_pos_encoding"):
        ours(torch.randn(1, 3, 40, 40))
    with pytest.raises(InputError, match="num_channels"):
        ours(torch.randn(1, 1, 30, 30))


def test_vit_save_round_trip_and_base_from_head(vit_folders, tmp_path):
    ours = pretrained.ViTForImageClassification.from_pretrained(vit_folders / "cls")
    ours.save_pretrained(tmp_path)
    ref = transformers.ViTForImageClassification.from_pretrained(tmp_path).eval()
    x = torch.randn(1, 3, 30, 30)
    with torch.no_grad():
        _close(ours(x).logits, ref(x).logits)
    # the base model inside a classifier checkpoint loads (the `vit.` prefix is stripped)
    base, info = pretrained.ViTModel.from_pretrained(vit_folders / "cls", output_loading_info=True)
    assert set(info["missing_keys"]) == {"pooler.dense.weight", "pooler.dense.bias"}


def test_vit_bool_masked_pos_matches_reference(vit_folders):
    ref = transformers.ViTModel.from_pretrained(vit_folders / "base", use_mask_token=True).eval()
    ours = pretrained.ViTModel.from_pretrained(vit_folders / "base", True, True)  # add_pooling_layer, use_mask_token
    with torch.no_grad():
        ours.embeddings.mask_token.copy_(torch.randn(1, 1, 32))
        ref.embeddings.mask_token.copy_(ours.embeddings.mask_token)
        mask = torch.tensor([[True, False, True, False, False, True, False, False, True]])
        x = torch.randn(1, 3, 30, 30)
        _close(ours(x, bool_masked_pos=mask).last_hidden_state, ref(x, bool_masked_pos=mask).last_hidden_state)


def test_vit_dtype_and_gradient_checkpointing(vit_folders):
    half = pretrained.ViTForImageClassification.from_pretrained(vit_folders / "cls", dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16
    x = torch.randn(2, 3, 30, 30)
    with torch.no_grad():
        assert half(x).logits.dtype == torch.bfloat16  # float32 pixels are cast to the weights' dtype
    model = pretrained.ViTForImageClassification.from_pretrained(vit_folders / "cls").train()
    labels = torch.tensor([0, 1])
    model(x, labels=labels).loss.backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.gradient_checkpointing_enable()
    model(x, labels=labels).loss.backward()
    for g, p in zip(plain, model.parameters()):
        torch.testing.assert_close(p.grad, g)
