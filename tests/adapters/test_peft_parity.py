"""LoRA adapters against the peft package: files written by either load in the other with equal logits,
merged weights equal, and the model's parameter names, trainable set and saved keys are PEFT's own."""

from __future__ import annotations

import json
import os

import pytest
import torch

import pretrained
from pretrained.adapters import LoraLinear, get_peft_model_state_dict, set_peft_model_state_dict

from helpers import TINY_BERT, TINY_LLAMA, build_base, hf_base, ids, perturb_trainable

peft = pytest.importorskip("peft")
safetensors_torch = pytest.importorskip("safetensors.torch")

ATOL = 1e-5


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return build_base(tmp_path_factory.mktemp("llama"), "LlamaConfig", "LlamaForCausalLM", **TINY_LLAMA)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return build_base(tmp_path_factory.mktemp("bert"), "BertConfig", "BertForSequenceClassification", **TINY_BERT)


def peft_adapter(base_dir, model_name, out_dir, **config):
    """A PEFT model on the transformers base with its trainable parameters moved off their init, saved."""
    torch.manual_seed(0)  # PEFT's random init of A and B (init_lora_weights=False)
    model = peft.get_peft_model(hf_base(base_dir, model_name), peft.LoraConfig(**config))
    perturb_trainable(model)
    model.save_pretrained(out_dir)
    return model.eval()


def saved_tensors(folder):
    return safetensors_torch.load_file(os.path.join(folder, "adapter_model.safetensors"))


def logits(model, x):
    with torch.no_grad():
        return model(x).logits


LLAMA_CASES = {
    # q_proj untouched while v_proj is adapted: q/k/v must not run as the fused projection built before injection
    "list": dict(r=4, lora_alpha=8, target_modules=["v_proj", "o_proj", "up_proj"]),
    "rslora_patterns": dict(r=4, lora_alpha=16, use_rslora=True, target_modules=["q_proj", "down_proj"],
                            rank_pattern={"down_proj": 2}, alpha_pattern={"layers.1.self_attn.q_proj": 4}),
    "regex": dict(r=2, target_modules=r".*\.layers\.1\.(self_attn\.k_proj|mlp\.gate_proj)"),
    "all_linear_lm_head": dict(r=2, target_modules="all-linear", modules_to_save=["lm_head"]),
    "layers_to_transform": dict(r=2, target_modules=["q_proj", "v_proj"], layers_to_transform=[1],
                                layers_pattern="layers"),
}


@pytest.mark.parametrize("case", sorted(LLAMA_CASES))
def test_peft_llama_adapter_loads_in_ours(llama_dir, tmp_path, case):
    config = dict(LLAMA_CASES[case], task_type="CAUSAL_LM", init_lora_weights=False)
    reference = peft_adapter(llama_dir, "LlamaForCausalLM", tmp_path, **config)
    x = ids(TINY_LLAMA["vocab_size"])
    expected = logits(reference, x)

    ours = pretrained.PeftModel.from_pretrained(pretrained.AutoModelForCausalLM.from_pretrained(llama_dir), tmp_path)
    assert type(ours).__name__ == "PeftModelForCausalLM"
    assert set(ours.state_dict()) == set(reference.state_dict())
    assert {n for n, m in ours.named_modules() if isinstance(m, LoraLinear)} == \
        {n for n, m in reference.named_modules() if isinstance(m, peft.tuners.lora.LoraLayer)}
    assert not any(p.requires_grad for p in ours.parameters())  # is_trainable=False, as PEFT
    # eval mode (loaded models are): inference kernels and fused projections of the untouched modules
    torch.testing.assert_close(logits(ours, x), expected, atol=ATOL, rtol=0)
    ours.train()
    torch.testing.assert_close(logits(ours, x), expected, atol=ATOL, rtol=0)


def test_fused_projections_with_adapters(llama_dir, tmp_path):
    """Eval mode fuses q/k/v and gate/up; a module an adapter wraps leaves its group, and merging in place keeps a
    fused group right (its slices are the merged weights)."""
    reference = peft_adapter(llama_dir, "LlamaForCausalLM", tmp_path, r=4, target_modules=["v_proj", "gate_proj"],
                             init_lora_weights=False)
    x = ids(TINY_LLAMA["vocab_size"])
    base = pretrained.AutoModelForCausalLM.from_pretrained(llama_dir)
    attention = base.model.layers[0].self_attn
    with torch.no_grad():  # (with a gradient the modules run one by one)
        assert attention.q_proj.fused_projection.serves((attention.q_proj, attention.k_proj, attention.v_proj))
    ours = pretrained.PeftModel.from_pretrained(base, tmp_path).eval()
    assert isinstance(attention.v_proj, LoraLinear)
    assert "fused_projection" not in vars(base.model.layers[0].mlp.up_proj)  # gate_proj wrapped: up runs alone
    torch.testing.assert_close(logits(ours, x), logits(reference, x), atol=ATOL, rtol=0)

    merged = ours.merge_and_unload()
    mlp = merged.model.layers[0].mlp
    with torch.no_grad():
        assert attention.q_proj.fused_projection.serves((attention.q_proj, attention.k_proj, attention.v_proj))
        assert mlp.gate_proj.fused_projection.serves((mlp.gate_proj, mlp.up_proj))  # fused again after unloading
    torch.testing.assert_close(logits(merged, x), logits(reference, x), atol=ATOL, rtol=0)


def test_our_llama_adapter_loads_in_peft(llama_dir, tmp_path):
    config = dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False,
                  task_type="CAUSAL_LM")
    torch.manual_seed(0)
    ours = pretrained.get_peft_model(pretrained.AutoModelForCausalLM.from_pretrained(llama_dir),
                                     pretrained.LoraConfig(**config))
    perturb_trainable(ours)
    ours.save_pretrained(tmp_path / "ours")
    reference = peft_adapter(llama_dir, "LlamaForCausalLM", tmp_path / "peft", **config)

    files = saved_tensors(tmp_path / "ours")
    assert {k: v.shape for k, v in files.items()} == {k: v.shape for k, v in saved_tensors(tmp_path / "peft").items()}
    ours_json = json.loads((tmp_path / "ours" / "adapter_config.json").read_text())
    peft_json = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    for key, value in ours_json.items():
        if key == "target_modules":  # a set in PEFT: any order
            assert sorted(value) == sorted(peft_json[key])
        elif key != "base_model_name_or_path":
            assert value == peft_json[key], key

    loaded = peft.PeftModel.from_pretrained(hf_base(llama_dir, "LlamaForCausalLM"), tmp_path / "ours").eval()
    x = ids(TINY_LLAMA["vocab_size"])
    torch.testing.assert_close(logits(loaded, x), logits(ours.eval(), x), atol=ATOL, rtol=0)
    assert logits(loaded, x).sub(logits(hf_base(llama_dir, "LlamaForCausalLM"), x)).abs().max() > 1e-3


BERT_CASES = {
    "lora_only_all_linear": dict(r=2, target_modules="all-linear", bias="lora_only"),
    "all_bias": dict(r=4, lora_alpha=16, target_modules=["query", "value", "dense"], bias="all", lora_dropout=0.1),
    "rslora_exclude": dict(r=4, use_rslora=True, target_modules=["query", "key", "dense"],
                           exclude_modules=["pooler.dense"], modules_to_save=["LayerNorm"]),
}


@pytest.mark.parametrize("case", sorted(BERT_CASES))
def test_bert_round_trips(bert_dir, tmp_path, case):
    config = dict(BERT_CASES[case], task_type="SEQ_CLS", init_lora_weights=False)
    reference = peft_adapter(bert_dir, "BertForSequenceClassification", tmp_path / "peft", **config)
    x = ids(TINY_BERT["vocab_size"])
    expected = logits(reference, x)

    base = pretrained.AutoModelForSequenceClassification.from_pretrained(bert_dir)
    ours = pretrained.PeftModel.from_pretrained(base, tmp_path / "peft", is_trainable=True)
    assert type(ours).__name__ == "PeftModelForSequenceClassification"
    assert set(ours.state_dict()) == set(reference.state_dict())
    assert {n for n, p in ours.named_parameters() if p.requires_grad} == \
        {n for n, p in peft.PeftModel.from_pretrained(hf_base(bert_dir, "BertForSequenceClassification"),
                                                      tmp_path / "peft", is_trainable=True).named_parameters()
         if p.requires_grad}
    torch.testing.assert_close(logits(ours, x), expected, atol=ATOL, rtol=0)

    # ours written back, read by PEFT: the same tensors under the same keys
    ours.save_pretrained(tmp_path / "ours")
    theirs, mine = saved_tensors(tmp_path / "peft"), saved_tensors(tmp_path / "ours")
    assert set(mine) == set(theirs)
    for key in theirs:
        torch.testing.assert_close(mine[key], theirs[key], atol=0, rtol=0)
    loaded = peft.PeftModel.from_pretrained(hf_base(bert_dir, "BertForSequenceClassification"), tmp_path / "ours")
    torch.testing.assert_close(logits(loaded.eval(), x), expected, atol=ATOL, rtol=0)


def test_new_bert_adapter_matches_peft_layout(bert_dir, tmp_path, capsys):
    """get_peft_model on the same base and config: PEFT's parameter names, trainable set, printed counts, files."""
    config = dict(r=2, target_modules="all-linear", task_type="SEQ_CLS", bias="lora_only")
    ours = pretrained.get_peft_model(pretrained.AutoModelForSequenceClassification.from_pretrained(bert_dir),
                                     pretrained.LoraConfig(**config))
    reference = peft.get_peft_model(hf_base(bert_dir, "BertForSequenceClassification"), peft.LoraConfig(**config))
    assert set(ours.state_dict()) == set(reference.state_dict())
    assert {n for n, p in ours.named_parameters() if p.requires_grad} == \
        {n for n, p in reference.named_parameters() if p.requires_grad}
    ours.print_trainable_parameters()
    printed = capsys.readouterr().out
    reference.print_trainable_parameters()
    assert printed == capsys.readouterr().out
    assert printed == "trainable params: 2,229 || all params: 21,880 || trainable%: 10.1874\n"
    assert sorted(ours.peft_config["default"].target_modules) == sorted(reference.peft_config["default"].target_modules)
    assert ours.peft_config["default"].modules_to_save == ["classifier", "score"]
    assert set(get_peft_model_state_dict(ours)) == set(peft.get_peft_model_state_dict(reference))
    ours.save_pretrained(tmp_path / "ours")
    reference.save_pretrained(tmp_path / "peft")
    assert set(saved_tensors(tmp_path / "ours")) == set(saved_tensors(tmp_path / "peft"))


def test_merge_and_unload_equals_peft(llama_dir, tmp_path):
    reference = peft_adapter(llama_dir, "LlamaForCausalLM", tmp_path, r=4, use_rslora=True,
                             target_modules=["q_proj", "v_proj", "gate_proj", "down_proj"], init_lora_weights=False)
    ours = pretrained.PeftModel.from_pretrained(pretrained.AutoModelForCausalLM.from_pretrained(llama_dir), tmp_path)
    merged_ours = ours.merge_and_unload(progressbar=True, safe_merge=True)
    merged_peft = reference.merge_and_unload()
    assert type(merged_ours).__name__ == "LlamaForCausalLM"
    assert not any(isinstance(m, LoraLinear) for m in merged_ours.modules())
    ours_state, peft_state = merged_ours.state_dict(), merged_peft.state_dict()
    assert set(ours_state) == set(peft_state)
    for key, value in peft_state.items():
        torch.testing.assert_close(ours_state[key], value, atol=1e-6, rtol=0)
    x = ids(TINY_LLAMA["vocab_size"])
    torch.testing.assert_close(logits(merged_ours, x), logits(merged_peft, x), atol=ATOL, rtol=0)
    # and the merged model saves as a plain checkpoint transformers loads
    merged_ours.save_pretrained(tmp_path / "merged")
    torch.testing.assert_close(logits(hf_base(tmp_path / "merged", "LlamaForCausalLM"), x),
                               logits(merged_peft, x), atol=ATOL, rtol=0)


def test_unload_restores_base(llama_dir, tmp_path):
    peft_adapter(llama_dir, "LlamaForCausalLM", tmp_path, r=4, target_modules=["q_proj", "v_proj"],
                 init_lora_weights=False)
    x = ids(TINY_LLAMA["vocab_size"])
    base_logits = logits(hf_base(llama_dir, "LlamaForCausalLM"), x)
    ours = pretrained.PeftModel.from_pretrained(pretrained.AutoModelForCausalLM.from_pretrained(llama_dir), tmp_path)
    assert logits(ours, x).sub(base_logits).abs().max() > 1e-3
    plain = ours.unload()
    assert not any(isinstance(m, LoraLinear) for m in plain.modules())
    torch.testing.assert_close(logits(plain, x), base_logits, atol=ATOL, rtol=0)


def test_generate_through_peft_model(llama_dir, tmp_path):
    reference = peft_adapter(llama_dir, "LlamaForCausalLM", tmp_path, r=4, target_modules=["q_proj", "v_proj"],
                             init_lora_weights=False, task_type="CAUSAL_LM")
    ours = pretrained.AutoPeftModelForCausalLM.from_pretrained(tmp_path)
    prompt = ids(TINY_LLAMA["vocab_size"], batch=1, length=5)
    expected = reference.generate(input_ids=prompt, max_new_tokens=8, do_sample=False)
    assert torch.equal(ours.generate(prompt, max_new_tokens=8, do_sample=False), expected)
    with ours.disable_adapter(), reference.disable_adapter():
        assert torch.equal(ours.generate(prompt, max_new_tokens=8, do_sample=False),
                           reference.generate(input_ids=prompt, max_new_tokens=8, do_sample=False))


def test_gpt2_conv1d_layout(tmp_path):
    """GPT-2's checkpoint stores its projections (in, out) (Conv1D); ours are nn.Linear with the transpose in the
    checkpoint rules. LoRA matrices have the same shapes in both, and a merged model saves in Conv1D layout."""
    base_dir = build_base(tmp_path / "gpt2", "GPT2Config", "GPT2LMHeadModel", vocab_size=96, n_embd=32, n_layer=2,
                          n_head=4, n_positions=64)
    reference = peft_adapter(base_dir, "GPT2LMHeadModel", tmp_path / "peft", r=4, fan_in_fan_out=True,
                             target_modules=["c_attn", "c_proj", "c_fc"], init_lora_weights=False)
    x = ids(96)
    ours = pretrained.get_peft_model(pretrained.AutoModelForCausalLM.from_pretrained(base_dir),
                                     pretrained.LoraConfig(r=4, fan_in_fan_out=True,
                                                           target_modules=["c_attn", "c_proj", "c_fc"]))
    set_peft_model_state_dict(ours, peft.get_peft_model_state_dict(reference))
    torch.testing.assert_close(logits(ours, x), logits(reference, x), atol=ATOL, rtol=0)
    ours.merge_and_unload().save_pretrained(tmp_path / "merged")
    torch.testing.assert_close(logits(hf_base(tmp_path / "merged", "GPT2LMHeadModel"), x),
                               logits(reference.merge_and_unload(), x), atol=ATOL, rtol=0)


def kept_for_backward_and_grads(model, x):
    """(loss, {trainable name: grad}, bytes of the distinct storages autograd kept for backward) of one
    training step with dropout on, from a fixed RNG state."""
    kept = {}

    def pack(t):
        storage = t.untyped_storage()
        kept[storage.data_ptr()] = storage.nbytes()
        return t

    torch.manual_seed(1)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(input_ids=x, labels=x).loss
    loss.backward()
    return loss, {n: p.grad for n, p in model.named_parameters() if p.requires_grad}, sum(kept.values())


def test_training_step_equals_peft_and_keeps_less_for_backward(llama_dir, tmp_path):
    """With lora_dropout on, one step draws the same dropout masks as PEFT (same RNG calls, same order) and
    gives the same loss and adapter gradients; autograd keeps less: x once per input shared by q/k/v (and by
    gate/up) plus a bool mask, where PEFT keeps dropout's float noise and the dropped copy per projection."""
    config = dict(r=4, lora_alpha=8, lora_dropout=0.2, init_lora_weights=False, task_type="CAUSAL_LM",
                  target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    reference = peft_adapter(llama_dir, "LlamaForCausalLM", tmp_path / "peft", **config).train()
    ours = pretrained.PeftModel.from_pretrained(pretrained.AutoModelForCausalLM.from_pretrained(llama_dir),
                                                tmp_path / "peft", is_trainable=True).train()
    x = ids(TINY_LLAMA["vocab_size"], batch=4, length=32)
    their_loss, their_grads, their_bytes = kept_for_backward_and_grads(reference, x)
    our_loss, our_grads, our_bytes = kept_for_backward_and_grads(ours, x)
    torch.testing.assert_close(our_loss, their_loss, atol=1e-6, rtol=0)
    assert our_grads.keys() == their_grads.keys() and len(our_grads) == 2 * 7 * TINY_LLAMA["num_hidden_layers"]
    for name, grad in their_grads.items():
        torch.testing.assert_close(our_grads[name], grad, atol=1e-6, rtol=1e-5, msg=name)
    # per layer and token: PEFT keeps 8 bytes per input element of each projection (q, k, v, o, gate, up read
    # C-wide inputs, down an F-wide one); we keep 4 per element of the distinct inputs (attention norm,
    # attention output, MLP norm, SwiGLU product) and a 1-byte mask per projection
    tokens, C, F_ = x.numel(), TINY_LLAMA["hidden_size"], TINY_LLAMA["intermediate_size"]
    peft_lora = 8 * (6 * C + F_)
    ours_lora = 4 * (3 * C + F_) + 1 * (6 * C + F_)
    saved = tokens * TINY_LLAMA["num_hidden_layers"] * (peft_lora - ours_lora)
    assert their_bytes - our_bytes >= 0.9 * saved, (their_bytes, our_bytes, saved)
