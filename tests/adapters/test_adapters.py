"""Named adapters, disabling, training (only adapter parameters get gradients), loading in place for a resumed
run, the Auto classes and the errors; PEFT is the oracle wherever it has the same API."""

from __future__ import annotations

import json
import os

import pytest
import torch

import pretrained
from pretrained.errors import CheckpointError, ConfigError, InputError, UnsupportedOptionError

from helpers import TINY_BERT, TINY_LLAMA, build_base, hf_base, ids, perturb_trainable

peft = pytest.importorskip("peft")

ATOL = 1e-5


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return build_base(tmp_path_factory.mktemp("llama"), "LlamaConfig", "LlamaForCausalLM", **TINY_LLAMA)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return build_base(tmp_path_factory.mktemp("bert"), "BertConfig", "BertForSequenceClassification", **TINY_BERT)


@pytest.fixture(scope="module")
def two_adapters(llama_dir, tmp_path_factory):
    """Two PEFT adapters of the tiny Llama, non-zero: (folder a, folder b)."""
    folders = []
    for seed, targets in ((1, ["q_proj", "v_proj"]), (2, ["k_proj", "down_proj"])):
        folder = tmp_path_factory.mktemp(f"adapter{seed}")
        torch.manual_seed(seed)
        model = peft.get_peft_model(hf_base(llama_dir, "LlamaForCausalLM"),
                                    peft.LoraConfig(r=4, target_modules=targets, init_lora_weights=False,
                                                    task_type="CAUSAL_LM"))
        perturb_trainable(model, seed)
        model.save_pretrained(folder)
        folders.append(folder)
    return folders


def logits(model, x):
    with torch.no_grad():
        return model(x).logits


def test_named_adapters_set_and_disable(llama_dir, two_adapters, tmp_path):
    a, b = two_adapters
    reference = peft.PeftModel.from_pretrained(hf_base(llama_dir, "LlamaForCausalLM"), a).eval()
    reference.load_adapter(b, adapter_name="other")
    ours = pretrained.PeftModel.from_pretrained(pretrained.AutoModelForCausalLM.from_pretrained(llama_dir), a)
    ours.load_adapter(b, adapter_name="other")
    x = ids(TINY_LLAMA["vocab_size"])
    base = logits(hf_base(llama_dir, "LlamaForCausalLM"), x)

    assert ours.active_adapter == "default"
    torch.testing.assert_close(logits(ours, x), logits(reference, x), atol=ATOL, rtol=0)
    ours.set_adapter("other")
    reference.set_adapter("other")
    assert ours.active_adapters == ["other"]
    assert {n for n, p in ours.named_parameters() if p.requires_grad} == \
        {n for n, p in reference.named_parameters() if p.requires_grad}
    torch.testing.assert_close(logits(ours, x), logits(reference, x), atol=ATOL, rtol=0)
    with ours.disable_adapter():
        torch.testing.assert_close(logits(ours, x), base, atol=ATOL, rtol=0)
    torch.testing.assert_close(logits(ours, x), logits(reference, x), atol=ATOL, rtol=0)  # enabled again

    # both saved, "other" in its subfolder, as PEFT lays them out
    ours.save_pretrained(tmp_path)
    assert sorted(json.loads((tmp_path / "other" / "adapter_config.json").read_text())["target_modules"]) == \
        ["down_proj", "k_proj"]
    loaded = peft.PeftModel.from_pretrained(hf_base(llama_dir, "LlamaForCausalLM"), tmp_path / "other").eval()
    torch.testing.assert_close(logits(loaded, x), logits(reference, x), atol=ATOL, rtol=0)

    ours.delete_adapter("other")
    assert ours.active_adapter == "default" and list(ours.peft_config) == ["default"]
    reference.set_adapter("default")
    torch.testing.assert_close(logits(ours, x), logits(reference, x), atol=ATOL, rtol=0)


def test_disable_adapter_after_merge(llama_dir, two_adapters):
    a, _ = two_adapters
    x = ids(TINY_LLAMA["vocab_size"])
    ours = pretrained.PeftModel.from_pretrained(pretrained.AutoModelForCausalLM.from_pretrained(llama_dir), a)
    adapted = logits(ours, x)
    ours.merge_adapter()
    torch.testing.assert_close(logits(ours, x), adapted, atol=ATOL, rtol=0)
    with ours.disable_adapter():  # a merged adapter is taken back out
        torch.testing.assert_close(logits(ours, x), logits(hf_base(llama_dir, "LlamaForCausalLM"), x),
                                   atol=ATOL, rtol=0)


def test_gradients_reach_only_the_adapter(bert_dir):
    base = pretrained.AutoModelForSequenceClassification.from_pretrained(bert_dir)
    frozen = [(p, p.detach().clone()) for p in base.parameters()]
    model = pretrained.get_peft_model(base, pretrained.LoraConfig(r=4, target_modules=["query", "value"],
                                                                  task_type="SEQ_CLS", lora_dropout=0.1))
    model.train()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n or ".modules_to_save.default." in n for n in trainable)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    x = ids(TINY_BERT["vocab_size"], length=8)
    out = model(input_ids=x, labels=torch.tensor([0, 2]))
    out.loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == trainable
    # B starts at zero, so only B (and the classifier copy) get a non-zero gradient on the first step
    assert all(p.grad.abs().sum() > 0 for n, p in model.named_parameters() if ".lora_B." in n)
    optimizer.step()
    for param, before in frozen:  # base weights untouched (the classifier trains as a copy)
        assert torch.equal(param, before)
    assert not torch.equal(model.get_base_model().classifier.modules_to_save["default"].weight,
                           model.get_base_model().classifier.original_module.weight)


def test_load_adapter_in_place_for_resume(llama_dir, two_adapters, tmp_path):
    """What a resumed training run does: the saved adapter's values come back into the same parameter objects."""
    a, _ = two_adapters
    model = pretrained.get_peft_model(pretrained.AutoModelForCausalLM.from_pretrained(llama_dir),
                                      pretrained.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert len(params) == 8
    model.load_adapter(a, adapter_name="default", is_trainable=True)
    assert {n: p for n, p in model.named_parameters() if p.requires_grad} == params
    x = ids(TINY_LLAMA["vocab_size"])
    reference = peft.PeftModel.from_pretrained(hf_base(llama_dir, "LlamaForCausalLM"), a).eval()
    torch.testing.assert_close(logits(model, x), logits(reference, x), atol=ATOL, rtol=0)


def test_auto_peft_model_for_sequence_classification(bert_dir, tmp_path):
    reference = peft.get_peft_model(hf_base(bert_dir, "BertForSequenceClassification"),
                                    peft.LoraConfig(r=2, target_modules=["query", "value"], task_type="SEQ_CLS",
                                                    init_lora_weights=False))
    perturb_trainable(reference)
    reference.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["base_model_name_or_path"] == bert_dir
    ours = pretrained.AutoPeftModelForSequenceClassification.from_pretrained(tmp_path)
    x = ids(TINY_BERT["vocab_size"])
    torch.testing.assert_close(logits(ours, x), logits(reference.eval(), x), atol=ATOL, rtol=0)
    with pytest.raises(ConfigError, match="task_type is SEQ_CLS"):
        pretrained.AutoPeftModelForCausalLM.from_pretrained(tmp_path)


def test_half_precision_base_keeps_float32_adapters(llama_dir):
    base = pretrained.AutoModelForCausalLM.from_pretrained(llama_dir, dtype=torch.bfloat16)
    model = pretrained.get_peft_model(base, pretrained.LoraConfig(r=4, target_modules=["q_proj"]))
    layer = model.get_base_model().model.layers[0].self_attn.q_proj
    assert layer.lora_A["default"].weight.dtype == torch.float32
    assert layer.base_layer.weight.dtype == torch.bfloat16
    assert logits(model, ids(TINY_LLAMA["vocab_size"])).dtype == torch.bfloat16


def test_errors(llama_dir, two_adapters, tmp_path):
    model = pretrained.AutoModelForCausalLM.from_pretrained(llama_dir)
    with pytest.raises(UnsupportedOptionError, match="use_dora"):
        pretrained.LoraConfig(use_dora=True)
    with pytest.raises(UnsupportedOptionError, match="init_lora_weights='pissa'"):
        pretrained.LoraConfig(init_lora_weights="pissa")
    with pytest.raises(ConfigError, match="bias"):
        pretrained.LoraConfig(bias="some")
    with pytest.raises(ConfigError, match="modules_to_save must be a list"):
        pretrained.LoraConfig(modules_to_save="classifier")
    with pytest.raises(ConfigError, match="LoraConfig.r must be a positive int"):
        pretrained.LoraConfig(r=0)
    with pytest.raises(ConfigError, match="matches no module"):
        pretrained.get_peft_model(model, pretrained.LoraConfig(target_modules=["no_such_proj"]))
    with pytest.raises(UnsupportedOptionError, match="embed_tokens"):
        pretrained.get_peft_model(model, pretrained.LoraConfig(target_modules=["embed_tokens"]))
    peft_model = pretrained.get_peft_model(model, pretrained.LoraConfig(target_modules=["q_proj"]))
    with pytest.raises(InputError, match="no adapter named 'missing'"):
        peft_model.set_adapter("missing")
    with pytest.raises(InputError, match="exists already"):
        peft_model.add_adapter("default", pretrained.LoraConfig(target_modules=["q_proj"]))

    folder = tmp_path / "dora"
    folder.mkdir()
    data = json.loads((two_adapters[0] / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**data, "loftq_config": {"loftq_bits": 4}}))
    with pytest.raises(UnsupportedOptionError, match=r"adapter_config.json: loftq_config="):
        pretrained.LoraConfig.from_pretrained(folder)
    (folder / "adapter_config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="adapter_model.safetensors"):
        pretrained.PeftModel.from_pretrained(pretrained.AutoModelForCausalLM.from_pretrained(llama_dir), folder)
    with pytest.raises(UnsupportedOptionError, match="unsupported keyword arguments"):
        pretrained.PeftModel.from_pretrained(pretrained.AutoModelForCausalLM.from_pretrained(llama_dir),
                                             two_adapters[0], ephemeral_gpu_offload=True)


@pytest.mark.parametrize("init", [True, "gaussian"])
def test_default_inits_leave_the_model_unchanged(llama_dir, init):
    x = ids(TINY_LLAMA["vocab_size"])
    model = pretrained.get_peft_model(pretrained.AutoModelForCausalLM.from_pretrained(llama_dir),
                                      pretrained.LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                            init_lora_weights=init))
    layer = model.get_base_model().model.layers[0].self_attn.q_proj
    assert not layer.lora_B["default"].weight.any() and layer.lora_A["default"].weight.any()
    with model.disable_adapter():
        base = logits(model, x)
    torch.testing.assert_close(logits(model, x), base, atol=0, rtol=0)


def test_gradient_checkpointing_gives_the_same_gradients(llama_dir):
    model = pretrained.get_peft_model(pretrained.AutoModelForCausalLM.from_pretrained(llama_dir),
                                      pretrained.LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                            init_lora_weights=False))
    model.train()
    x = ids(TINY_LLAMA["vocab_size"], length=8)
    grads = []
    for checkpointing in (False, True):
        if checkpointing:
            model.gradient_checkpointing_enable()
        model.zero_grad()
        model(input_ids=x, labels=x).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) == 8
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-6, rtol=0)


def test_static_cache_generate_and_disabled_modules_to_save(llama_dir, bert_dir, two_adapters):
    a, _ = two_adapters
    ours = pretrained.PeftModel.from_pretrained(pretrained.AutoModelForCausalLM.from_pretrained(llama_dir), a)
    reference = peft.PeftModel.from_pretrained(hf_base(llama_dir, "LlamaForCausalLM"), a).eval()
    prompt = ids(TINY_LLAMA["vocab_size"], batch=1, length=5)
    assert torch.equal(ours.generate(prompt, max_new_tokens=6, do_sample=False, cache_implementation="static"),
                       reference.generate(input_ids=prompt, max_new_tokens=6, do_sample=False))

    model = pretrained.get_peft_model(pretrained.AutoModelForSequenceClassification.from_pretrained(bert_dir),
                                      pretrained.LoraConfig(r=2, target_modules=["query"], task_type="SEQ_CLS"))
    perturb_trainable(model)
    x = ids(TINY_BERT["vocab_size"])
    with model.disable_adapter():  # the original classifier, not the trained copy
        torch.testing.assert_close(logits(model, x), logits(hf_base(bert_dir, "BertForSequenceClassification"), x),
                                   atol=ATOL, rtol=0)


def test_refused_targets_leave_the_model_unchanged(llama_dir):
    model = pretrained.AutoModelForCausalLM.from_pretrained(llama_dir)
    before = {n: type(m) for n, m in model.named_modules()}
    with pytest.raises(UnsupportedOptionError, match="LlamaRMSNorm|nn.Linear layers only"):
        pretrained.get_peft_model(model, pretrained.LoraConfig(
            target_modules=r".*layers\.0\.(self_attn\.q_proj|input_layernorm)"))
    with pytest.raises(ConfigError, match=r"modules_to_save: \['lm_haed'\]"):
        pretrained.get_peft_model(model, pretrained.LoraConfig(target_modules=["q_proj"],
                                                               modules_to_save=["lm_haed"]))
    assert {n: type(m) for n, m in model.named_modules()} == before


def test_trainer_checkpoints_hold_only_the_adapter(llama_dir, tmp_path):
    """Trainer saves through PeftModel.save_pretrained: checkpoints are PEFT adapter folders that PEFT loads."""
    base = pretrained.AutoModelForCausalLM.from_pretrained(llama_dir)
    frozen = [(p, p.detach().clone()) for p in base.parameters()]
    model = pretrained.get_peft_model(base, pretrained.LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                                  task_type="CAUSAL_LM"))
    rows = ids(TINY_LLAMA["vocab_size"], batch=8, length=12).tolist()
    data = [{"input_ids": row, "labels": row} for row in rows]
    # the Trainer reads the base model's forward signature through the PeftModel (remove_unused_columns)
    args = pretrained.TrainingArguments(output_dir=str(tmp_path), max_steps=2, save_steps=2, learning_rate=1e-2,
                                        per_device_train_batch_size=4, report_to=[])
    pretrained.Trainer(model=model, args=args, train_dataset=data).train()
    checkpoint = tmp_path / "checkpoint-2"
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(os.listdir(checkpoint))
    assert not any(name.startswith("model") for name in os.listdir(checkpoint))
    for param, before in frozen:
        assert torch.equal(param, before)
    x = ids(TINY_LLAMA["vocab_size"])
    loaded = peft.PeftModel.from_pretrained(hf_base(llama_dir, "LlamaForCausalLM"), checkpoint).eval()
    torch.testing.assert_close(logits(loaded, x), logits(model.eval(), x), atol=ATOL, rtol=0)
    assert logits(loaded, x).sub(logits(hf_base(llama_dir, "LlamaForCausalLM"), x)).abs().max() > 1e-4


def test_trainer_resumes_an_adapter_run_exactly(llama_dir, tmp_path):
    """A LoRA run cut after step 3 (last checkpoint at 2, adapter files only) and resumed ends bit for bit where
    the uninterrupted run ends; the frozen base model is never touched."""
    rows = ids(TINY_LLAMA["vocab_size"], batch=16, length=12).tolist()
    data = [{"input_ids": row, "labels": row, "unused": 1} for row in rows]

    def run(folder, resume=None, stop_at=None):
        torch.manual_seed(0)
        model = pretrained.get_peft_model(pretrained.AutoModelForCausalLM.from_pretrained(llama_dir),
                                          pretrained.LoraConfig(r=4, lora_dropout=0.1, target_modules=["q_proj", "v_proj"]))
        args = pretrained.TrainingArguments(output_dir=str(folder), max_steps=6, save_steps=2, learning_rate=1e-2,
                                            per_device_train_batch_size=4, report_to=[], disable_tqdm=True)

        class Stop(pretrained.training.TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                control.should_training_stop = state.global_step == stop_at

        trainer = pretrained.Trainer(model=model, args=args, train_dataset=data, callbacks=[Stop()])
        trainer.train(resume_from_checkpoint=resume)
        return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}

    full = run(tmp_path / "full")
    run(tmp_path / "cut", stop_at=3)
    resumed = run(tmp_path / "cut", resume=str(tmp_path / "cut" / "checkpoint-2"))
    assert full.keys() == resumed.keys() and all("lora_" in k for k in full)
    for key in full:
        assert torch.equal(full[key], resumed[key]), key


def test_bin_adapter_files(llama_dir, two_adapters, tmp_path):
    a, _ = two_adapters
    ours = pretrained.PeftModel.from_pretrained(pretrained.AutoModelForCausalLM.from_pretrained(llama_dir), a)
    ours.save_pretrained(tmp_path, safe_serialization=False)
    assert "adapter_model.bin" in os.listdir(tmp_path)
    again = pretrained.PeftModel.from_pretrained(pretrained.AutoModelForCausalLM.from_pretrained(llama_dir), tmp_path)
    x = ids(TINY_LLAMA["vocab_size"])
    torch.testing.assert_close(logits(again, x), logits(ours, x), atol=0, rtol=0)
