"""The merged decoder graph (past keys/values in and out): step logits equal our PyTorch model's
within 1e-4, and ORTModelForCausalLM.generate() gives the PyTorch model's tokens (greedy, beam,
sampling) for GPT-2 and Llama."""

from __future__ import annotations

import json

import pytest
import torch

pytestmark = pytest.mark.slow  # two decoder exports, ~35 s on 2 cores
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from checkpoints import hf_checkpoint  # noqa: E402
from pretrained import AutoModelForCausalLM  # noqa: E402
from pretrained.cache import DynamicCache  # noqa: E402
from pretrained.errors import UnsupportedOptionError  # noqa: E402
from pretrained.exporters.onnx import export  # noqa: E402
from pretrained.exporters.runtime import ORTModelForCausalLM  # noqa: E402

FAMILIES = {
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(vocab_size=300, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                                   bos_token_id=1, eos_token_id=2)),
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(vocab_size=300, hidden_size=32, num_hidden_layers=2,
                                                      num_attention_heads=4, num_key_value_heads=2,
                                                      intermediate_size=37, max_position_embeddings=64,
                                                      bos_token_id=1, eos_token_id=2, pad_token_id=0)),
}


@pytest.fixture(scope="module", params=list(FAMILIES))
def exported(request, tmp_path_factory):
    """(our PyTorch model, its ORTModelForCausalLM, the export folder)."""
    config_name, model_name, kwargs = FAMILIES[request.param]
    root = tmp_path_factory.mktemp(request.param)
    source = hf_checkpoint(root / "pt", config_name, model_name, **kwargs)
    _byte_level_tokenizer(root / "pt", kwargs["vocab_size"])  # for the text-generation pipeline
    folder = export(source, root / "onnx", task="text-generation")
    return AutoModelForCausalLM.from_pretrained(source).eval(), ORTModelForCausalLM.from_pretrained(folder), folder


def _byte_level_tokenizer(folder, vocab_size: int) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["the cat sat on the mat", "a dog ran in the park", "onnx graphs run fast"], trainer)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GPT2TokenizerFast", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "model_max_length": 64}))


def _prompt():
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(3, 99, (2, 6), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :2] = 0  # left padding
    return ids, mask


def test_export_records_the_merged_decoder(exported):
    _, ort_model, folder = exported
    record = json.loads((folder / "export.json").read_text())
    assert record["exporter"] == "dynamo" and record["max_abs_diff"] <= 1e-4
    assert record["inputs"][:3] == ["input_ids", "attention_mask", "position_ids"]
    assert "past_key_values.1.value" in record["inputs"] and "present.1.value" in record["outputs"]
    assert (folder / "generation_config.json").is_file()


def test_step_logits_match_pytorch_with_cache(exported):
    ours, ort_model, _ = exported
    ids, mask = _prompt()
    ours_cache, ort_cache = DynamicCache(), DynamicCache()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        expected = ours(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=ours_cache,
                        use_cache=True).logits
    got = ort_model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=ort_cache)
    torch.testing.assert_close(got.logits, expected, atol=1e-4, rtol=0)
    step = expected[:, -1].argmax(-1, keepdim=True)  # one decode step on top of the cache
    mask = torch.cat([mask, torch.ones_like(step)], dim=1)
    with torch.no_grad():
        expected = ours(input_ids=step, attention_mask=mask, position_ids=positions[:, -1:] + 1,
                        past_key_values=ours_cache, use_cache=True).logits
    got = ort_model(input_ids=step, attention_mask=mask, position_ids=positions[:, -1:] + 1, past_key_values=ort_cache)
    torch.testing.assert_close(got.logits, expected, atol=1e-4, rtol=0)
    assert ort_cache.get_seq_length() == ours_cache.get_seq_length() == 7
    with pytest.raises(UnsupportedOptionError, match="attentions"):
        ort_model(input_ids=step, output_attentions=True)


@pytest.mark.parametrize("options", [dict(do_sample=False), dict(num_beams=3, do_sample=False),
                                     dict(num_beams=2, num_return_sequences=2, do_sample=False),
                                     dict(do_sample=True, top_k=20, temperature=0.8)],
                         ids=["greedy", "beam", "beam-2-returned", "sampling"])
def test_generate_equals_pytorch_tokens(exported, options):
    ours, ort_model, _ = exported
    ids, mask = _prompt()
    torch.manual_seed(0)
    expected = ours.generate(ids, attention_mask=mask, max_new_tokens=10, **options)
    torch.manual_seed(0)
    got = ort_model.generate(ids, attention_mask=mask, max_new_tokens=10, **options)
    assert torch.equal(got, expected)


def test_text_generation_pipeline(exported):
    from pretrained import pipeline

    ours, ort_model, folder = exported
    assert (folder / "tokenizer.json").is_file()  # copied beside the graph: the pipeline finds it there
    got = pipeline("text-generation", model=ort_model)(["the cat", "a dog ran"], max_new_tokens=6, do_sample=False)
    expected = pipeline("text-generation", model=ours.name_or_path)(["the cat", "a dog ran"], max_new_tokens=6,
                                                                    do_sample=False)
    assert got == expected


def test_generate_refuses_what_the_pytorch_model_refuses(exported):
    """GPT-2's learned positions end at n_positions: both refuse a longer generation by name."""
    ours, ort_model, _ = exported
    assert ort_model.learned_positions == ours.learned_positions
    if not ours.learned_positions:
        long = ort_model.generate(_prompt()[0], max_new_tokens=70, min_new_tokens=70)
        assert long.shape[1] == 76  # rotary positions extrapolate
        return
    with pytest.raises(Exception, match="max_position_embeddings=64") as expected:
        ours.generate(_prompt()[0], max_new_tokens=70)
    with pytest.raises(type(expected.value), match="max_position_embeddings=64"):
        ort_model.generate(_prompt()[0], max_new_tokens=70)


_SMALL = dict(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              intermediate_size=37, max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0)
OTHER_FAMILIES = {  # the rest of the decoders: the merged graph's greedy and beam tokens equal PyTorch's
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(_SMALL, sliding_window=None)),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", _SMALL),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(_SMALL, head_dim=8)),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", _SMALL),
    # a 4-token window over an 8-token prompt: the graph's sliding mask is exercised past the window
    "gemma3_text": ("Gemma3TextConfig", "Gemma3ForCausalLM",
                    dict(_SMALL, head_dim=8, sliding_window=4, layer_types=["sliding_attention", "full_attention"])),
    "mixtral": ("MixtralConfig", "MixtralForCausalLM", dict(_SMALL, num_local_experts=4, num_experts_per_tok=2)),
    "qwen3_moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM",
                  dict(_SMALL, head_dim=8, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16)),
}


@pytest.mark.parametrize("family", list(OTHER_FAMILIES))
def test_every_decoder_family_exports_and_generates_pytorch_tokens(tmp_path, family):
    config_name, model_name, kwargs = OTHER_FAMILIES[family]
    source = hf_checkpoint(tmp_path / "pt", config_name, model_name, **kwargs)
    folder = export(source, tmp_path / "onnx", task="text-generation")
    assert json.loads((folder / "export.json").read_text())["exporter"] == "dynamo"
    ours, ort_model = AutoModelForCausalLM.from_pretrained(source).eval(), ORTModelForCausalLM.from_pretrained(folder)
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(3, 300, (2, 8), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding
    for options in (dict(do_sample=False), dict(num_beams=3, do_sample=False)):
        expected = ours.generate(ids, attention_mask=mask, max_new_tokens=8, min_new_tokens=8, **options)
        got = ort_model.generate(ids, attention_mask=mask, max_new_tokens=8, min_new_tokens=8, **options)
        assert torch.equal(got, expected), options
