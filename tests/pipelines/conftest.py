"""Tiny random checkpoints for pipeline parity: written by transformers (the oracle), with real
tokenizers (MiniLM's WordPiece; a byte-level BPE trained here), loaded by both libraries."""

from __future__ import annotations

import json

import pytest
from pipeline_helpers import bert_checkpoint

@pytest.fixture(scope="session")
def ckpt(tmp_path_factory, minilm_path):
    """ckpt(kind) -> folder of a tiny checkpoint, built once per session."""
    built = {}
    specs = {
        "seqcls": ("BertForSequenceClassification", dict(labels=["NEG", "NEU", "POS"], scale=20.0)),
        "tokcls": ("BertForTokenClassification", dict(labels=["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], scale=30.0)),
        "mlm": ("BertForMaskedLM", {}),
        "qa": ("BertForQuestionAnswering", dict(scale=30.0)),
        "nli": ("BertForSequenceClassification", dict(labels=["contradiction", "neutral", "entailment"], scale=20.0)),
        "base": ("BertModel", {}),
    }

    def get(kind: str) -> str:
        if kind not in built:
            model_name, options = specs[kind]
            built[kind] = bert_checkpoint(tmp_path_factory.mktemp(kind), minilm_path, model_name, **options)
        return built[kind]

    return get


CORPUS = [
    "The quick brown fox jumps over the lazy dog.", "Hello world, this is a tiny corpus for a tiny tokenizer.",
    "Paris is the capital of France and Berlin is the capital of Germany.",
    "Machine learning models turn text into numbers.", "Once upon a time there was a small model.",
] * 4


@pytest.fixture(scope="session")
def gpt2_path(tmp_path_factory):
    """A tiny random GPT-2 with a byte-level BPE tokenizer trained on a few sentences."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    folder = tmp_path_factory.mktemp("gpt2")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GPT2TokenizerFast", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "model_max_length": 64,
        "chat_template": "{% for m in messages %}<|endoftext|>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}assistant:{% endif %}",
    }))
    config = transformers.GPT2Config(vocab_size=tok.get_vocab_size(), n_positions=64, n_embd=32, n_layer=2, n_head=4,
                                     bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(config).eval().save_pretrained(folder)
    return str(folder)


