"""Chat templates (ChatML, Llama-3 style) rendered and tokenized as transformers does, and the
save_pretrained / from_pretrained round trip of every backend."""

import json
import os
import shutil

import pytest

from encoding_checks import FULL_KEYS_CALL, compare_call

hf = pytest.importorskip("transformers")

from pretrained import AutoTokenizer  # noqa: E402
from pretrained.errors import CheckpointError  # noqa: E402

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAMA3 = (
    "{{- bos_token }}{%- if messages[0]['role'] == 'system' %}{%- set system = messages[0]['content']|trim %}"
    "{%- set messages = messages[1:] %}{%- else %}{%- set system = 'You are helpful.' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\n\n' + system + '<|eot_id|>' }}"
    "{%- for message in messages %}{%- if message['role'] not in ['user', 'assistant'] %}"
    "{{- raise_exception('roles must be user or assistant') }}{%- endif %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}"
    "{%- if tools %}{{ tools | tojson(indent=2) }}{%- endif %}"
)
CHATS = [
    [{"role": "user", "content": "Hello there!"}],
    [{"role": "system", "content": "Be brief. "}, {"role": "user", "content": "Café? 北京"},
     {"role": "assistant", "content": "  Sure thing  "}, {"role": "user", "content": "again"}],
]


@pytest.fixture(scope="module")
def chat_folder(tmp_path_factory, minilm_path):
    folder = tmp_path_factory.mktemp("chat")
    for name in ("vocab.txt", "tokenizer.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(minilm_path, name), folder / name)
    config = json.load(open(os.path.join(minilm_path, "tokenizer_config.json")))
    config["chat_template"] = CHATML
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return str(folder)


@pytest.mark.parametrize("template", ["chatml", "llama3"])
@pytest.mark.parametrize("use_fast", [True, False])
def test_chat_templates_match(chat_folder, template, use_fast):
    tok = AutoTokenizer.from_pretrained(chat_folder, use_fast=use_fast)
    oracle = hf.AutoTokenizer.from_pretrained(chat_folder)
    source = None if template == "chatml" else LLAMA3
    for extra in ({}, {"bos_token": "<|begin_of_text|>"}):
        for chat in CHATS:
            for gen in (False, True):
                kw = dict(chat_template=source, add_generation_prompt=gen, **extra)
                assert tok.apply_chat_template(chat, tokenize=False, **kw) == \
                    oracle.apply_chat_template(chat, tokenize=False, **kw)
                a = tok.apply_chat_template(chat, **kw)
                b = oracle.apply_chat_template(chat, **kw)
                assert a["input_ids"] == b["input_ids"] and a["attention_mask"] == b["attention_mask"]
                assert tok.apply_chat_template(chat, return_dict=False, **kw) == b["input_ids"]
    kw = dict(chat_template=source, continue_final_message=True)
    chat = CHATS[1][:3]
    assert tok.apply_chat_template(chat, tokenize=False, **kw) == oracle.apply_chat_template(chat, tokenize=False, **kw)
    batch = tok.apply_chat_template(CHATS, chat_template=source, padding=True, return_tensors="pt")
    expected = oracle.apply_chat_template(CHATS, chat_template=source, padding=True, return_tensors="pt")
    assert batch["input_ids"].tolist() == expected["input_ids"].tolist()
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city, °C",
                                                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    assert tok.apply_chat_template(CHATS[0], chat_template=LLAMA3, tools=tools, tokenize=False) == \
        oracle.apply_chat_template(CHATS[0], chat_template=LLAMA3, tools=tools, tokenize=False)


def test_chat_template_errors_and_sandbox(chat_folder, minilm_path):
    tok = AutoTokenizer.from_pretrained(chat_folder)
    with pytest.raises(Exception, match="roles must be user or assistant"):
        tok.apply_chat_template([{"role": "tool", "content": "x"}], chat_template=LLAMA3)
    with pytest.raises(ValueError, match="not compatible"):
        tok.apply_chat_template(CHATS[0], add_generation_prompt=True, continue_final_message=True)
    from jinja2.exceptions import SecurityError

    with pytest.raises(SecurityError):
        tok.apply_chat_template(CHATS[0], chat_template="{{ messages.append(1) }}")
    plain = AutoTokenizer.from_pretrained(minilm_path)
    with pytest.raises(ValueError, match="chat template"):
        plain.apply_chat_template(CHATS[0])


def test_chat_template_jinja_file(chat_folder, tmp_path):
    folder = tmp_path / "jinja"
    shutil.copytree(chat_folder, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    del config["chat_template"]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "chat_template.jinja").write_text(LLAMA3)
    ours = AutoTokenizer.from_pretrained(str(folder))
    oracle = hf.AutoTokenizer.from_pretrained(str(folder))
    assert ours.chat_template == oracle.chat_template == LLAMA3
    assert ours.apply_chat_template(CHATS[1], tokenize=False) == oracle.apply_chat_template(CHATS[1], tokenize=False)


@pytest.mark.parametrize("use_fast", [True, False])
def test_save_pretrained_round_trip(chat_folder, tmp_path, corpus, use_fast):
    tok = AutoTokenizer.from_pretrained(chat_folder, use_fast=use_fast, model_max_length=128)
    tok.add_tokens(["<ent>"], special_tokens=True)
    tok.padding_side = "left"
    out = tmp_path / "saved"
    written = tok.save_pretrained(str(out))
    names = sorted(os.path.basename(p) for p in written)
    assert "tokenizer_config.json" in names and "special_tokens_map.json" in names
    assert ("tokenizer.json" if use_fast else "vocab.txt") in names
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]  # atomic writes leave no temporaries
    again = AutoTokenizer.from_pretrained(str(out), use_fast=use_fast)
    oracle = hf.AutoTokenizer.from_pretrained(str(out))
    assert again.model_max_length == oracle.model_max_length == 128
    assert again.padding_side == oracle.padding_side == "left"
    assert again.chat_template == tok.chat_template == oracle.chat_template
    texts = ["with <ent> inside", "x"] + corpus[:200]
    compare_call(again, oracle, texts, padding=True, **FULL_KEYS_CALL)
    compare_call(tok, oracle, texts, padding=True, **FULL_KEYS_CALL)


def test_unknown_folder_errors(tmp_path):
    with pytest.raises(CheckpointError, match="tokenizer"):
        AutoTokenizer.from_pretrained(str(tmp_path))
    (tmp_path / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="tokenizer_config.json"):
        AutoTokenizer.from_pretrained(str(tmp_path))
    (tmp_path / "tokenizer_config.json").write_text('{"tokenizer_class": "BertTokenizer"}')
    with pytest.raises(CheckpointError, match="vocab.txt"):
        AutoTokenizer.from_pretrained(str(tmp_path))


def test_import_does_not_pull_torch():
    import subprocess
    import sys

    code = ("import sys, pretrained; from pretrained import AutoTokenizer, BertTokenizer, BertTokenizerFast, "
            "LlamaTokenizer; from pretrained.tokenization import chat; assert 'torch' not in sys.modules, 'torch'; "
            "assert 'transformers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
