"""Tiny checkpoint and tokenizer folders written by pretrained itself, for the hardening tests to damage."""

from __future__ import annotations

import json
import os

TINY_BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, vocab_size=99,
                 max_position_embeddings=64, type_vocab_size=2)
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "the", "##s", "a", "b", "c"]


def bert_folder(folder, seed: int = 0, **overrides) -> str:
    """A random pretrained BertModel saved with its config (and generation_config.json)."""
    import torch

    from pretrained import BertConfig, BertModel

    torch.manual_seed(seed)
    BertModel(BertConfig(**{**TINY_BERT, **overrides})).eval().save_pretrained(folder)
    write_json(os.path.join(folder, "generation_config.json"), {"max_length": 20, "pad_token_id": 0})
    return str(folder)


def tokenizer_folder(folder) -> str:
    """A WordPiece BERT tokenizer: tokenizer.json, tokenizer_config.json, special_tokens_map.json, vocab.txt."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    os.makedirs(folder, exist_ok=True)
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.save(os.path.join(folder, "tokenizer.json"))
    specials = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                "mask_token": "[MASK]"}
    write_json(os.path.join(folder, "tokenizer_config.json"),
               {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 64, **specials})
    write_json(os.path.join(folder, "special_tokens_map.json"), specials)
    with open(os.path.join(folder, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(VOCAB) + "\n")
    return str(folder)


WORDS = ("the quick brown fox jumps over a lazy dog while seven wizards quietly hex jovial zebras "
         "pack my box with five dozen liquor jugs and then sphinx of black quartz judge my vow").split()


def sentences(n: int = 400, seed: int = 0) -> list[str]:
    """A small seeded corpus to train SentencePiece and BPE vocabularies on."""
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))).capitalize() + "." for _ in range(n)]


def sentencepiece_folder(folder, model_type: str = "unigram") -> str:
    """A SentencePiece model trained here (unigram as T5's spiece.model, BPE with byte fallback as Llama's
    tokenizer.model) with its tokenizer_config.json and no tokenizer.json."""
    import io

    import sentencepiece as spm

    os.makedirs(folder, exist_ok=True)
    data = io.BytesIO()
    options = dict(pad_id=0, eos_id=1, unk_id=2, bos_id=-1) if model_type == "unigram" else dict(
        byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences()), model_writer=data, model_type=model_type,
                                   vocab_size=120 if model_type == "unigram" else 360, hard_vocab_limit=False,
                                   minloglevel=2, num_threads=1, **options)
    name, cls = ("spiece.model", "T5Tokenizer") if model_type == "unigram" else ("tokenizer.model", "LlamaTokenizer")
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data.getvalue())
    write_json(os.path.join(folder, "tokenizer_config.json"), {"tokenizer_class": cls})
    return str(folder)


def byte_level_bpe_folder(folder) -> str:
    """A GPT-2 style byte-level BPE as vocab.json + merges.txt (trained here), with no tokenizer.json."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    os.makedirs(folder, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(sentences(), trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tok.model.save(str(folder))
    write_json(os.path.join(folder, "tokenizer_config.json"), {"tokenizer_class": "GPT2Tokenizer"})
    return str(folder)


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_json(path, data) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)
