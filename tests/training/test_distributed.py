"""Two processes under torchrun (DDP, gloo on the CPU) train exactly as one process at the same global batch:
the same logged losses and the same final weights. The script is what a user runs; the test launches it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from checkpoints import hf_checkpoint

SCRIPT = textwrap.dedent('''
    import json, sys, torch
    import pretrained
    from pretrained.training import Trainer, TrainingArguments

    folder, out, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    fsdp, resume = (sys.argv[4:] + ["", ""])[:2]  # FSDP options ("" for DDP), a checkpoint to resume from
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 99, (24, 10), generator=gen)
    labels = ids.clone()
    labels[::3, :6] = -100  # rows with fewer label tokens: the item weighting must count every process's items
    data = [{"input_ids": ids[i], "attention_mask": torch.ones(10, dtype=torch.long), "labels": labels[i]}
            for i in range(24)]
    model = pretrained.AutoModelForCausalLM.from_pretrained(folder)
    args = TrainingArguments(output_dir=out, per_device_train_batch_size=batch, gradient_accumulation_steps=2,
                             learning_rate=5e-3, num_train_epochs=2, logging_steps=1, seed=7, optim="adamw_torch",
                             warmup_steps=1, report_to="none", save_strategy="steps", save_steps=3, disable_tqdm=True,
                             fsdp=fsdp or None)
    def token_accuracy(prediction):
        logits, labels = prediction
        keep = labels[:, 1:] != -100
        return {"accuracy": float((logits[:, :-1].argmax(-1) == labels[:, 1:])[keep].mean())}

    trainer = Trainer(model=model, args=args, train_dataset=data, eval_dataset=data[:11],
                      compute_metrics=token_accuracy)
    trainer.train(resume_from_checkpoint=resume or None)
    metrics = trainer.evaluate()  # 11 rows in batches of 8: the processes split them, then gather
    trainer.save_model(out + "/final")  # every process takes part (a sharded model is gathered); process 0 writes
    if trainer.state.is_world_process_zero:
        losses = [(e["step"], e["loss"]) for e in trainer.state.log_history if "loss" in e]
        losses.append(("eval", metrics["eval_loss"], metrics["eval_accuracy"]))
        with open(out + "/losses.json", "w") as f:
            json.dump(losses, f)
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(script, folder, out, batch: int, *extra: str, processes: int = 1) -> None:
    launcher = [] if processes == 1 else ["-m", "torch.distributed.run", f"--nproc_per_node={processes}",
                                          "--master_addr=127.0.0.1", f"--master_port={_free_port()}"]
    subprocess.run([sys.executable, *launcher, str(script), folder, str(out), str(batch), *extra], check=True,
                   timeout=300)


def _assert_same_training(one, two) -> None:
    a, b = json.loads((one / "losses.json").read_text()), json.loads((two / "losses.json").read_text())
    assert [s for s, *_ in a] == [s for s, *_ in b] == [*range(1, 7), "eval"]
    for (_, *la), (_, *lb) in zip(a, b):
        assert la == pytest.approx(lb, abs=1e-6)
    wa, wb = load_file(one / "final" / "model.safetensors"), load_file(two / "final" / "model.safetensors")
    # Gradients differ by float rounding only (two half-batch sums all-reduced vs one sum); Adam divides by
    # sqrt(v), which turns a rounding-level difference on a rarely seen embedding row into ~1e-6 of weight
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], atol=1e-5, rtol=1e-5, msg=lambda m: f"{key}: {m}")
    assert sorted(p.name for p in two.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]  # process 0 saved


@pytest.fixture
def tiny_llama(tmp_path):
    folder = hf_checkpoint(tmp_path / "m", "LlamaConfig", "LlamaForCausalLM", vocab_size=99, hidden_size=32,
                           intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                           max_position_embeddings=64, pad_token_id=0)
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    return folder, script


@pytest.mark.slow
def test_two_process_ddp_equals_one_process(tmp_path, tiny_llama):
    folder, script = tiny_llama
    _run(script, folder, tmp_path / "one", 4)
    _run(script, folder, tmp_path / "two", 2, processes=2)
    _assert_same_training(tmp_path / "one", tmp_path / "two")


@pytest.mark.slow
def test_two_process_fsdp_equals_one_process_and_resumes_exactly(tmp_path, tiny_llama):
    """FSDP2 (each layer sharded, then the rest) trains as one process does; its checkpoints hold the whole
    model and optimizer, and resuming from one under FSDP ends where the uninterrupted run ended."""
    folder, script = tiny_llama
    _run(script, folder, tmp_path / "one", 4)
    _run(script, folder, tmp_path / "two", 2, "full_shard auto_wrap", processes=2)
    _assert_same_training(tmp_path / "one", tmp_path / "two")
    saved = tmp_path / "two" / "checkpoint-3"
    assert (saved / "config.json").exists() and (saved / "optimizer.pt").exists()
    assert json.loads((saved / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    _run(script, folder, tmp_path / "resumed", 2, "full_shard auto_wrap", str(saved), processes=2)
    wa = load_file(tmp_path / "two" / "final" / "model.safetensors")
    wb = load_file(tmp_path / "resumed" / "final" / "model.safetensors")
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], atol=0, rtol=0, msg=lambda m: f"{key}: {m}")
