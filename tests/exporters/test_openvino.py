"""OpenVINO models over our ONNX exports: every encoder task's outputs within 1e-4 of our PyTorch model,
generate() tokens equal to PyTorch's for a decoder and a seq2seq model, pipeline() support, clear errors."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.slow  # seven exports, ~80 s on 2 cores
pytest.importorskip("openvino")
pytest.importorskip("onnxruntime")  # the export validates in ONNX Runtime
pytest.importorskip("onnxscript")

import pretrained.auto as auto  # noqa: E402
from checkpoints import TINY_ENCODER, hf_checkpoint  # noqa: E402
from pretrained import pipeline  # noqa: E402
from pretrained.errors import CheckpointError, InputError, UnsupportedOptionError  # noqa: E402
from pretrained.exporters import openvino as ov_models  # noqa: E402
from pretrained.exporters.onnx import TASKS, export  # noqa: E402

OV_CLASSES = {
    "feature-extraction": ("BertModel", ov_models.OVModelForFeatureExtraction),
    "fill-mask": ("BertForMaskedLM", ov_models.OVModelForMaskedLM),
    "text-classification": ("BertForSequenceClassification", ov_models.OVModelForSequenceClassification),
    "token-classification": ("BertForTokenClassification", ov_models.OVModelForTokenClassification),
    "question-answering": ("BertForQuestionAnswering", ov_models.OVModelForQuestionAnswering),
}


@pytest.fixture(scope="module")
def encoder_exports(tmp_path_factory, minilm_path):
    import shutil

    root = tmp_path_factory.mktemp("ov_bert")
    made = {}
    for task, (name, _) in OV_CLASSES.items():
        config = {**TINY_ENCODER, "vocab_size": 30522, "max_position_embeddings": 128}
        if task == "question-answering":
            config["num_labels"] = 2
        source = hf_checkpoint(root / task, "BertConfig", name, **config)
        for file in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
            shutil.copy(f"{minilm_path}/{file}", source)
        made[task] = (source, export(source, root / f"{task}-onnx", task=task))
    return made


def _batch(vocab: int):
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(5, vocab, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("task", list(OV_CLASSES))
def test_encoder_tasks_match_pytorch(encoder_exports, task):
    source, folder = encoder_exports[task]
    ours = getattr(auto, TASKS[task][0]).from_pretrained(source).eval()
    model = OV_CLASSES[task][1].from_pretrained(folder)
    assert model.providers == ["OpenVINO:CPU"]
    batch = _batch(ours.config.vocab_size)
    with torch.no_grad():
        expected = ours(**batch)
    got = model(**batch)
    for name in TASKS[task][1]:
        torch.testing.assert_close(got[name], expected[name], atol=1e-4, rtol=0)
    batch = _batch(ours.config.vocab_size)
    batch = {k: v[:1, :4] for k, v in batch.items()}  # another shape: the compiled graph is dynamic
    with torch.no_grad():
        torch.testing.assert_close(model(**batch)[TASKS[task][1][0]], ours(**batch)[TASKS[task][1][0]], atol=1e-4, rtol=0)


def test_pipeline_and_errors(encoder_exports, tmp_path, monkeypatch):
    source, folder = encoder_exports["text-classification"]
    texts = ["the cat sat on the mat.", "a much longer sentence, so that the batch has to be padded here."]
    got = pipeline("text-classification", model=ov_models.OVModelForSequenceClassification.from_pretrained(folder))(
        texts, top_k=None)
    expected = pipeline("text-classification", model=source)(texts, top_k=None)
    for a, b in zip(got, expected):
        assert [x["label"] for x in a] == [x["label"] for x in b]
        assert [x["score"] for x in a] == pytest.approx([x["score"] for x in b], abs=1e-4)
    with pytest.raises(UnsupportedOptionError, match="OpenVINO device 'NPU' is not available"):
        ov_models.OVModelForSequenceClassification.from_pretrained(folder, device="NPU")
    with pytest.raises(InputError, match="exported for task 'text-classification'"):
        ov_models.OVModelForMaskedLM.from_pretrained(folder)
    with pytest.raises(UnsupportedOptionError, match=r"from_pretrained\(device=...\)"):
        ov_models.OVModelForSequenceClassification.from_pretrained(folder).to("cuda")
    (tmp_path / "model.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(CheckpointError, match="not a readable ONNX graph for OpenVINO"):
        ov_models.OVModelForFeatureExtraction.from_pretrained(tmp_path)
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ImportError, match=r"pip install 'pretrained\[openvino\]'"):
        ov_models.OVModelForFeatureExtraction.from_pretrained(folder)


def test_causal_lm_generate_equals_pytorch(tmp_path):
    source = hf_checkpoint(tmp_path / "pt", "LlamaConfig", "LlamaForCausalLM", vocab_size=300, hidden_size=32,
                           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=37,
                           max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    ours = auto.AutoModelForCausalLM.from_pretrained(source).eval()
    model = ov_models.OVModelForCausalLM.from_pretrained(source, export=True, cache_dir=tmp_path / "cache")
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(3, 300, (2, 6), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :2] = 0  # left padding
    with torch.no_grad():
        expected = ours(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).logits, expected, atol=1e-4, rtol=0)
    for options in (dict(do_sample=False), dict(num_beams=3, do_sample=False),
                    dict(do_sample=True, top_k=20, temperature=0.8)):
        torch.manual_seed(0)
        want = ours.generate(ids, attention_mask=mask, max_new_tokens=10, **options)
        torch.manual_seed(0)
        assert torch.equal(model.generate(ids, attention_mask=mask, max_new_tokens=10, **options), want), options


def test_seq2seq_generate_equals_pytorch(tmp_path):
    source = hf_checkpoint(tmp_path / "pt", "BartConfig", "BartForConditionalGeneration", vocab_size=99, d_model=32,
                           encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                           encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=64)
    ours = auto.AutoModelForSeq2SeqLM.from_pretrained(source).eval()
    model = ov_models.OVModelForSeq2SeqLM.from_pretrained(source, export=True, cache_dir=tmp_path / "cache")
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 99, (2, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    for options in (dict(do_sample=False), dict(num_beams=3, do_sample=False)):
        want = ours.generate(ids, attention_mask=mask, max_new_tokens=8, min_new_tokens=8, **options)
        assert torch.equal(model.generate(ids, attention_mask=mask, max_new_tokens=8, min_new_tokens=8, **options), want)
