"""CLIP parity with transformers on tiny random checkpoints: both towers, projections, logits, loss."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

import pretrained  # noqa: E402

TEXT = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=20, projection_dim=16, eos_token_id=98, bos_token_id=97, pad_token_id=1)
VISION = dict(hidden_size=24, num_hidden_layers=2, num_attention_heads=4, intermediate_size=30, image_size=30,
              patch_size=10, projection_dim=16)


def _close(a, b):
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def _text_inputs():
    ids = torch.tensor([[97, 5, 6, 7, 98, 1, 1], [97, 8, 9, 10, 11, 12, 98]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]])
    return ids, mask


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("clip")
    config = transformers.CLIPConfig(text_config=TEXT, vision_config=VISION, projection_dim=16)
    transformers.CLIPModel(config).save_pretrained(path)
    return path


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_clip_model_parity(clip_folder, attn):
    ref = transformers.CLIPModel.from_pretrained(clip_folder, attn_implementation=attn).eval()
    ours = pretrained.AutoModel.from_pretrained(clip_folder, attn_implementation=attn)
    assert type(ours).__name__ == "CLIPModel"
    ids, mask = _text_inputs()
    pixels = torch.randn(3, 3, 30, 30)
    flags = dict(output_hidden_states=True, output_attentions=attn == "eager")
    with torch.no_grad():
        a = ref(input_ids=ids, attention_mask=mask, pixel_values=pixels, **flags)
        b = ours(input_ids=ids, attention_mask=mask, pixel_values=pixels, **flags)
        # the contrastive loss pairs text i with image i
        loss = ours(input_ids=ids, attention_mask=mask, pixel_values=pixels[:2], return_loss=True).loss
        _close(loss, ref(input_ids=ids, attention_mask=mask, pixel_values=pixels[:2], return_loss=True).loss)
    assert b.logits_per_image.shape == (3, 2)
    for name in ("logits_per_image", "logits_per_text", "text_embeds", "image_embeds"):
        _close(getattr(b, name), getattr(a, name))
    for tower in ("text_model_output", "vision_model_output"):
        x, y = getattr(b, tower), getattr(a, tower)
        _close(x.last_hidden_state, y.last_hidden_state)
        _close(x.pooler_output, y.pooler_output)
        assert len(x.hidden_states) == len(y.hidden_states)
        for h_ours, h_ref in zip(x.hidden_states, y.hidden_states):
            _close(h_ours, h_ref)
        if attn == "eager":
            for w_ours, w_ref in zip(x.attentions, y.attentions):
                _close(w_ours, w_ref)
    assert len(b.to_tuple()) == len(a.to_tuple())


def test_clip_features_tensor_by_default_and_5x_output_on_request(clip_folder):
    ref = transformers.CLIPModel.from_pretrained(clip_folder).eval()
    ours = pretrained.CLIPModel.from_pretrained(clip_folder)
    ids, mask = _text_inputs()
    pixels = torch.randn(2, 3, 30, 30)
    with torch.no_grad():
        text_ref = ref.get_text_features(input_ids=ids, attention_mask=mask).pooler_output
        image_ref = ref.get_image_features(pixel_values=pixels).pooler_output
        text = ours.get_text_features(input_ids=ids, attention_mask=mask)
        image = ours.get_image_features(pixel_values=pixels)
        assert isinstance(text, torch.Tensor) and text.shape == (2, 16)
        _close(text, text_ref)
        _close(image, image_ref)
        out = ours.get_image_features(pixel_values=pixels, return_dict=True)
        _close(out.pooler_output, image_ref)
        big = torch.randn(1, 3, 40, 50)
        _close(ours.get_image_features(pixel_values=big, interpolate_pos_encoding=True),
               ref.get_image_features(pixel_values=big, interpolate_pos_encoding=True).pooler_output)


def test_clip_towers_load_from_the_whole_checkpoint(clip_folder, tmp_path):
    ids, mask = _text_inputs()
    pixels = torch.randn(2, 3, 30, 30)
    with torch.no_grad():
        pairs = [
            (transformers.CLIPTextModel, pretrained.CLIPTextModel, dict(input_ids=ids, attention_mask=mask),
             ("last_hidden_state", "pooler_output")),
            (transformers.CLIPVisionModel, pretrained.CLIPVisionModel, dict(pixel_values=pixels),
             ("last_hidden_state", "pooler_output")),
            (transformers.CLIPTextModelWithProjection, pretrained.CLIPTextModelWithProjection,
             dict(input_ids=ids, attention_mask=mask), ("text_embeds", "last_hidden_state")),
            (transformers.CLIPVisionModelWithProjection, pretrained.CLIPVisionModelWithProjection,
             dict(pixel_values=pixels), ("image_embeds", "last_hidden_state")),
        ]
        for ref_cls, our_cls, inputs, fields in pairs:
            ours = our_cls.from_pretrained(clip_folder)
            ref = ref_cls.from_pretrained(clip_folder).eval()
            for field in fields:
                _close(getattr(ours(**inputs), field), getattr(ref(**inputs), field))
            # a tower saved by us loads in transformers (and through AutoModel here) with the same outputs
            folder = tmp_path / our_cls.__name__
            ours.save_pretrained(folder)
            again = ref_cls.from_pretrained(folder).eval()
            _close(getattr(again(**inputs), fields[0]), getattr(ours(**inputs), fields[0]))
        auto = pretrained.AutoModel.from_pretrained(tmp_path / "CLIPTextModel")
        assert type(auto).__name__ == "CLIPTextModel"


def test_clip_save_round_trip(clip_folder, tmp_path):
    ours = pretrained.CLIPModel.from_pretrained(clip_folder)
    ours.save_pretrained(tmp_path)
    config = pretrained.AutoConfig.from_pretrained(tmp_path)
    assert config.text_config.eos_token_id == 98 and config.vision_config.patch_size == 10
    ref = transformers.CLIPModel.from_pretrained(tmp_path).eval()
    ids, _ = _text_inputs()
    pixels = torch.randn(1, 3, 30, 30)
    with torch.no_grad():
        _close(ours(input_ids=ids, pixel_values=pixels).logits_per_image,
               ref(input_ids=ids, pixel_values=pixels).logits_per_image)


def test_clip_half_precision_and_training_step(clip_folder):
    ids, mask = _text_inputs()
    pixels = torch.randn(2, 3, 30, 30)
    half = pretrained.CLIPModel.from_pretrained(clip_folder, dtype=torch.bfloat16)
    with torch.no_grad():
        out = half(input_ids=ids, attention_mask=mask, pixel_values=pixels)
    assert out.logits_per_image.dtype == torch.bfloat16 and torch.isfinite(out.logits_per_image.float()).all()
    model = pretrained.CLIPModel.from_pretrained(clip_folder).train()
    model.gradient_checkpointing_enable()
    loss = model(input_ids=ids, attention_mask=mask, pixel_values=pixels, return_loss=True).loss
    loss.backward()
    assert model.logit_scale.grad is not None and model.text_model.embeddings.token_embedding.weight.grad is not None


def test_clip_image_classifier_parity(tmp_path):
    torch.manual_seed(0)
    config = transformers.CLIPConfig(text_config=TEXT, vision_config=VISION, projection_dim=16, num_labels=3)
    transformers.CLIPForImageClassification(config).save_pretrained(tmp_path)
    ref = transformers.CLIPForImageClassification.from_pretrained(tmp_path).eval()
    ours = pretrained.AutoModelForImageClassification.from_pretrained(tmp_path)
    assert type(ours).__name__ == "CLIPForImageClassification"
    pixels, labels = torch.randn(2, 3, 30, 30), torch.tensor([2, 0])
    with torch.no_grad():
        a, b = ref(pixels, labels=labels), ours(pixels, labels=labels)
    _close(b.logits, a.logits)
    _close(b.loss, a.loss)
