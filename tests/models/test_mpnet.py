"""MPNet against transformers: every head with a padded batch (relative-position bias, RoBERTa-style
positions), state_dict keys, save round trips, gradient checkpointing, and the sentence-transformers
layout (all-mpnet-base-v2: MPNetModel's keys without the `mpnet.` prefix)."""

from __future__ import annotations

import pytest
import torch

import pretrained
from encoder_parity import (HEADS, assert_gradient_checkpointing, assert_head_parity, assert_outputs_close,
                            assert_saved_by_us_loads_in_transformers, build, padded_batch)

# 160 positions: a 150-token row reaches distances past 128, the last bucket
TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=160, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
PAD = 1


@pytest.fixture(scope="module")
def mpnet(tmp_path_factory):
    cache = {}

    def get(head):
        if head not in cache:
            cache[head] = build(tmp_path_factory.mktemp(head), "MPNet", head, **TINY)
        return cache[head]

    return get


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_parity_with_transformers(mpnet, head, attn):
    assert_head_parity(mpnet(head), "MPNet", head, PAD, attn)


@pytest.mark.parametrize("head", ["ForMaskedLM", "ForSequenceClassification"])
def test_saved_by_us_loads_in_transformers(mpnet, head, tmp_path):
    assert_saved_by_us_loads_in_transformers(mpnet(head), "MPNet", head, PAD, tmp_path)


def test_gradient_checkpointing(mpnet):
    assert_gradient_checkpointing(mpnet("ForMaskedLM"), "MPNet", "ForMaskedLM", PAD)


def test_long_sequence_uses_log_spaced_buckets(mpnet):
    import transformers

    folder = mpnet("Model")
    ids = torch.randint(3, 99, (1, 150), generator=torch.Generator().manual_seed(4))  # distances past 128
    theirs = transformers.MPNetModel.from_pretrained(folder).eval()
    ours = pretrained.MPNetModel.from_pretrained(folder)
    with torch.no_grad():
        assert_outputs_close(ours(ids), theirs(ids))


def test_masked_lm_ties_decoder_to_embeddings(mpnet):
    model = pretrained.MPNetForMaskedLM.from_pretrained(mpnet("ForMaskedLM"))
    assert model.lm_head.decoder.weight is model.mpnet.embeddings.word_embeddings.weight
    assert model.lm_head.decoder.bias is model.lm_head.bias


def test_sentence_transformers_layout_and_auto_classes(mpnet, tmp_path):
    """all-mpnet-base-v2 stores MPNetModel's keys without prefix; it loads into the base model and the
    heads' bases, and AutoModel / the feature-extraction pipeline pick MPNet from config.json."""
    import transformers

    folder = mpnet("Model")
    base = pretrained.AutoModel.from_pretrained(folder)
    assert type(base).__name__ == "MPNetModel"
    assert "encoder.relative_attention_bias.weight" in base.state_dict()
    head, info = pretrained.MPNetForTokenClassification.from_pretrained(folder, output_loading_info=True)
    assert set(info["missing_keys"]) == {"classifier.weight", "classifier.bias"}
    for name, p in head.mpnet.named_parameters():
        torch.testing.assert_close(p, base.get_parameter(name), atol=0, rtol=0)
    inputs = padded_batch(PAD)
    theirs = transformers.MPNetModel.from_pretrained(folder).eval()
    with torch.no_grad():
        assert_outputs_close(base(**inputs), theirs(**inputs))


def test_inputs_embeds_and_errors(mpnet):
    import transformers

    folder = mpnet("Model")
    theirs = transformers.MPNetModel.from_pretrained(folder).eval()
    ours = pretrained.MPNetModel.from_pretrained(folder)
    ids = padded_batch(PAD, lengths=(7, 7))["input_ids"]
    embeds = theirs.embeddings.word_embeddings(ids).detach()
    with torch.no_grad():
        assert_outputs_close(ours(inputs_embeds=embeds), theirs(inputs_embeds=embeds))
    with pytest.raises(pretrained.errors.InputError, match="exactly one of input_ids or inputs_embeds"):
        ours(ids, inputs_embeds=embeds)
    with pytest.raises(pretrained.ConfigError, match="relative_attention_num_buckets"):
        pretrained.MPNetConfig(relative_attention_num_buckets=16).validate()


def test_tokenizer_json_folder_feeds_the_model(mpnet, tmp_path):
    """all-mpnet-base-v2 names tokenizer_class MPNetTokenizer beside a tokenizer.json: AutoTokenizer gives
    MPNetTokenizerFast, whose encodings (no token_type_ids) equal transformers' and feed MPNetModel."""
    import json

    import transformers
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    words = "the quick brown fox jumps over lazy dog hello world ##s ##ing".split()
    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "[UNK]", "<mask>"] + words)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
                                                       special_tokens=[("<s>", 0), ("</s>", 2)])
    tok.add_special_tokens(["<s>", "<pad>", "</s>", "[UNK]", "<mask>"])
    tok.save(str(tmp_path / "tokenizer.json"))
    specials = dict(bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>", pad_token="<pad>",
                    unk_token="[UNK]", mask_token="<mask>")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "MPNetTokenizer", **specials}))
    texts = ["The quick brown fox jumps", "hello worlds", "lazy dog <mask> barking"]
    ours_tok = pretrained.AutoTokenizer.from_pretrained(tmp_path)
    theirs_tok = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert type(ours_tok).__name__ == "MPNetTokenizerFast"
    ours_enc, theirs_enc = ours_tok(texts, padding=True, return_tensors="pt"), theirs_tok(texts, padding=True, return_tensors="pt")
    assert set(ours_enc) == set(theirs_enc) == {"input_ids", "attention_mask"}
    assert torch.equal(ours_enc["input_ids"], theirs_enc["input_ids"])
    folder = mpnet("Model")
    with torch.no_grad():
        assert_outputs_close(pretrained.MPNetModel.from_pretrained(folder)(**ours_enc),
                             transformers.MPNetModel.from_pretrained(folder).eval()(**theirs_enc))
