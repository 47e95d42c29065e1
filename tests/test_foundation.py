"""What training, adapters and new families build on: module names are the checkpoint's keys for every
family, loading builds on the meta device without touching torch's globals (so threads can load at
once), and every family recomputes its layers under gradient checkpointing with unchanged gradients."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

import pretrained
from checkpoints import TINY_DISTILBERT, TINY_ENCODER, hf_checkpoint

TINY_LLAMA = dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0)
T5 = dict(vocab_size=99, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
          decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
BART = dict(vocab_size=99, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=64)
# name: (transformers config, transformers model, kwargs, our Auto class, the module holding the layers)
FAMILIES = {
    "bert": ("BertConfig", "BertForMaskedLM", TINY_ENCODER, "AutoModelForMaskedLM", "bert.encoder.layer"),
    "roberta": ("RobertaConfig", "RobertaForMaskedLM", dict(TINY_ENCODER, pad_token_id=1), "AutoModelForMaskedLM",
                "roberta.encoder.layer"),
    "distilbert": ("DistilBertConfig", "DistilBertForMaskedLM", TINY_DISTILBERT, "AutoModelForMaskedLM",
                   "distilbert.transformer.layer"),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=64),
             "AutoModelForCausalLM", "transformer.h"),
    "llama": ("LlamaConfig", "LlamaForCausalLM", TINY_LLAMA, "AutoModelForCausalLM", "model.layers"),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(TINY_LLAMA, sliding_window=4), "AutoModelForCausalLM",
                "model.layers"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", TINY_LLAMA, "AutoModelForCausalLM", "model.layers"),
    "t5": ("T5Config", "T5ForConditionalGeneration", T5, "AutoModelForSeq2SeqLM", "decoder.block"),
    "bart": ("BartConfig", "BartForConditionalGeneration", BART, "AutoModelForSeq2SeqLM", "model.decoder.layers"),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return {name: hf_checkpoint(tmp_path_factory.mktemp(name), config, model, **kwargs)
            for name, (config, model, kwargs, *_) in FAMILIES.items()}


def load(name, folder, **kwargs):
    return getattr(pretrained, FAMILIES[name][3]).from_pretrained(folder, **kwargs)


def inputs(name):
    ids = torch.randint(3, 99, (2, 7), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "labels": ids}
    if FAMILIES[name][3] == "AutoModelForSeq2SeqLM":
        batch["labels"] = ids[:, :5]
    return batch


@pytest.mark.parametrize("name", FAMILIES)
def test_state_dict_keys_are_the_checkpoints(folders, name):
    import transformers

    theirs = getattr(transformers, FAMILIES[name][1]).from_pretrained(folders[name])
    ours = load(name, folders[name])
    # GPT-2's reference registers causal-mask buffers that are not weights; no family has other differences
    their_keys = {k for k in theirs.state_dict() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
    assert set(ours.state_dict()) == their_keys
    state = {k: v for k, v in theirs.state_dict().items() if k in their_keys}
    if name == "gpt2":  # the one declared difference: its Conv1D checkpoints store (in, out) weights
        state = {k: v.t() if k.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")) else v
                 for k, v in state.items()}
    missing, unexpected = ours.load_state_dict(state)  # Transformers' tensors load by name
    assert not missing and not unexpected


def test_llama_projections_are_addressable_by_checkpoint_name(folders):
    model = load("llama", folders["llama"])
    for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
        assert isinstance(model.get_submodule(f"model.layers.0.self_attn.{name}"), nn.Linear)
    for name in ("gate_proj", "up_proj", "down_proj"):
        assert isinstance(model.get_submodule(f"model.layers.1.mlp.{name}"), nn.Linear)
    seen = []
    model.get_submodule("model.layers.0.self_attn.v_proj").register_forward_hook(lambda m, i, o: seen.append(o.shape))
    model(torch.tensor([[5, 6, 7]]))
    assert seen == [torch.Size([1, 3, 2 * 8])]  # 2 kv heads of 8


def test_concurrent_loads_leave_torch_untouched(folders):
    """Loading builds on the meta device through per-thread contexts: overlapping loads from threads
    neither break each other nor leave new modules anywhere but on the CPU."""
    errors, logits = [], []
    ids = torch.tensor([[5, 6, 7, 8]])

    def worker():
        try:
            for _ in range(5):
                model = load("llama", folders["llama"])
                logits.append(model(ids).logits)
        except Exception as e:  # noqa: BLE001  (reported below)
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(logits) == 20 and all(torch.equal(x, logits[0]) for x in logits)
    assert nn.Linear(3, 3).weight.device.type == "cpu" and not nn.Linear(3, 3).weight.is_meta
    assert nn.init.normal_(torch.zeros(3)).abs().sum() > 0  # init functions are torch's own again
    again = load("llama", folders["llama"])
    assert torch.equal(again(ids).logits, logits[0])


def test_buffers_are_recomputed_after_meta_loading(tmp_path):
    """Non-persistent tables (rotary frequencies, Marian's sinusoids) are not in checkpoints: a model built on
    the meta device recomputes them, equal to a model built normally."""
    config = pretrained.LlamaConfig(**TINY_LLAMA)
    pretrained.LlamaForCausalLM(config).save_pretrained(tmp_path / "llama")
    built, loaded = pretrained.LlamaForCausalLM(config), pretrained.LlamaForCausalLM.from_pretrained(tmp_path / "llama")
    assert torch.equal(built.model.rotary_emb.inv_freq, loaded.model.rotary_emb.inv_freq)
    marian = pretrained.MarianConfig(**dict(BART, pad_token_id=98, decoder_start_token_id=98))
    pretrained.MarianMTModel(marian).save_pretrained(tmp_path / "marian")
    built, loaded = pretrained.MarianMTModel(marian), pretrained.MarianMTModel.from_pretrained(tmp_path / "marian")
    assert torch.equal(built.model.encoder.embed_positions.weight, loaded.model.encoder.embed_positions.weight)
    assert not any(b.is_meta for b in loaded.buffers()) and not any(p.is_meta for p in loaded.parameters())


@pytest.mark.parametrize("name", FAMILIES)
def test_gradient_checkpointing_recomputes_every_family(folders, name):
    reference = load(name, folders[name]).train()
    model = load(name, folders[name]).train()
    model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing and not reference.is_gradient_checkpointing
    layers = model.get_submodule(FAMILIES[name][4])
    calls = []
    layers[0].register_forward_pre_hook(lambda *_: calls.append(torch.is_grad_enabled()))

    batch = inputs(name)
    torch.manual_seed(0)  # the same dropout masks: recomputation replays the random state it ran with
    reference(**batch).loss.backward()
    torch.manual_seed(0)
    model(**batch).loss.backward()
    assert len(calls) == 2, f"{name}: layer 0 ran {len(calls)} times; checkpointing runs it again in backward"
    for (key, p), q in zip(model.named_parameters(), reference.parameters()):
        if p.grad is None:
            assert q.grad is None, key
            continue
        torch.testing.assert_close(p.grad, q.grad, atol=1e-6, rtol=1e-5, msg=lambda m: f"{key}: {m}")
    model.gradient_checkpointing_disable()
    assert not model.is_gradient_checkpointing


def test_eval_runs_inference_kernels_and_train_the_plain_modules(folders):
    from pretrained.optimize import InferenceLinear

    model = load("llama", folders["llama"])  # loaded models are in eval mode
    q = model.get_submodule("model.layers.0.self_attn.q_proj")
    assert type(q) is InferenceLinear and model.config.attn_implementation == "sdpa_inference"
    model.train()
    assert type(q) is nn.Linear and model.config.attn_implementation == "sdpa"
    model.use_inference_optimizations = False
    model.eval()
    assert type(q) is nn.Linear
    assert set(model.state_dict()) == set(load("llama", folders["llama"]).state_dict())


@pytest.mark.parametrize("option", [dict(from_tf=True), dict(from_flax=True), dict(offload_folder="/tmp/off"),
                                    dict(offload_state_dict=True), dict(use_flash_attention_2=True)])
def test_options_that_would_change_loading_are_refused_by_name(folders, option):
    from pretrained.errors import UnsupportedOptionError

    with pytest.raises(UnsupportedOptionError, match=next(iter(option))):
        load("llama", folders["llama"], **option)
    load("llama", folders["llama"], **{k: None for k in option})  # the default value is accepted


def test_key_mapping_renames_checkpoint_keys(folders, tmp_path):
    from safetensors.torch import load_file, save_file

    state = {k.replace("model.layers.", "model.blocks."): v
             for k, v in load_file(f"{folders['llama']}/model.safetensors").items()}
    pretrained.LlamaConfig.from_pretrained(folders["llama"]).save_pretrained(tmp_path)
    save_file(state, tmp_path / "model.safetensors")
    model, info = pretrained.AutoModelForCausalLM.from_pretrained(
        tmp_path, key_mapping={r"^model\.blocks\.": "model.layers."}, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    ids = torch.tensor([[5, 6, 7]])
    torch.testing.assert_close(model(ids).logits, load("llama", folders["llama"])(ids).logits, atol=0, rtol=0)


def test_weights_a_checkpoint_lacks_get_the_family_init(tmp_path):
    """A T5 decoder loaded from an encoder-only file: the missing projections get T5's init (set by the
    parent attention module, by role), not uninitialised memory; loaded weights stay as loaded."""
    config = pretrained.T5Config(**T5)
    encoder = pretrained.T5EncoderModel(config)
    encoder.save_pretrained(tmp_path)
    model = pretrained.T5ForConditionalGeneration.from_pretrained(tmp_path)
    attn = model.decoder.block[0].layer[0].SelfAttention
    torch.manual_seed(0)
    for weight, std in ((attn.q.weight, (32 * 8) ** -0.5), (attn.k.weight, 32**-0.5),
                        (model.decoder.block[0].layer[-1].DenseReluDense.wo.weight, 37**-0.5)):
        assert torch.isfinite(weight).all() and abs(weight.std().item() / std - 1) < 0.25
    assert torch.equal(model.encoder.block[1].layer[0].SelfAttention.v.weight,
                       encoder.encoder.block[1].layer[0].SelfAttention.v.weight)
