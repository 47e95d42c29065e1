"""ONNX export of encoders: every task's graph in ONNX Runtime equals our PyTorch model within 1e-4,
the ORTModelFor* classes run in pipeline() with the PyTorch pipeline's results, bad input fails clearly."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import pretrained.auto as auto  # noqa: E402
from checkpoints import TINY_DISTILBERT, TINY_ENCODER, hf_checkpoint  # noqa: E402
from pretrained import pipeline  # noqa: E402
from pretrained.errors import CheckpointError, InputError, UnknownModelError, UnsupportedOptionError  # noqa: E402
from pretrained.exporters import runtime  # noqa: E402
from pretrained.exporters.onnx import TASKS, ExportError, export, sample_inputs, validate_graph  # noqa: E402

MINILM_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
ORT_CLASSES = {
    "feature-extraction": runtime.ORTModelForFeatureExtraction,
    "fill-mask": runtime.ORTModelForMaskedLM,
    "text-classification": runtime.ORTModelForSequenceClassification,
    "token-classification": runtime.ORTModelForTokenClassification,
    "question-answering": runtime.ORTModelForQuestionAnswering,
}
HF_CLASSES = {
    "feature-extraction": "BertModel", "fill-mask": "BertForMaskedLM",
    "text-classification": "BertForSequenceClassification", "token-classification": "BertForTokenClassification",
    "question-answering": "BertForQuestionAnswering",
}


@pytest.fixture(scope="module")
def bert_exports(tmp_path_factory, minilm_path):
    """task -> (PyTorch checkpoint folder with MiniLM's tokenizer, its exported folder)."""
    root = tmp_path_factory.mktemp("onnx_bert")
    made = {}
    for task, name in HF_CLASSES.items():
        config = {**TINY_ENCODER, "vocab_size": 30522, "max_position_embeddings": 128}
        if task == "question-answering":
            config["num_labels"] = 2  # start and end logits
        source = hf_checkpoint(root / task, "BertConfig", name, **config)
        for file in MINILM_TOKENIZER_FILES:
            shutil.copy(os.path.join(minilm_path, file), source)
        made[task] = (source, export(source, root / f"{task}-onnx", task=task))
    return made


def _batch(vocab: int, seed: int = 3):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.slow  # the module's five exports take ~40 s on 2 cores
@pytest.mark.parametrize("task", list(HF_CLASSES))
def test_bert_task_graph_matches_pytorch(bert_exports, task):
    source, folder = bert_exports[task]
    record = json.loads((folder / "export.json").read_text())
    assert record["task"] == task and record["exporter"] == "dynamo" and record["opset"] == 18
    assert record["max_abs_diff"] <= 1e-4
    for file in ("model.onnx", "config.json", "tokenizer.json", "vocab.txt"):
        assert (folder / file).is_file(), file
    ours = getattr(auto, TASKS[task][0]).from_pretrained(source).eval()
    ort_model = ORT_CLASSES[task].from_pretrained(folder)
    batch = _batch(ours.config.vocab_size)
    with torch.no_grad():
        expected = ours(**batch)
    got = ort_model(**batch)
    # feature-extraction exports last_hidden_state only (BERT's pooler is a task head's business)
    assert type(got).__name__ == ("BaseModelOutput" if task == "feature-extraction" else type(expected).__name__)
    for name in TASKS[task][1]:
        torch.testing.assert_close(got[name], expected[name], atol=1e-4, rtol=0)


TEXTS = ["the cat sat on the mat.", "a much longer sentence, so that the batch has to be padded here."]
PIPELINE_CASES = {
    "feature-extraction": ([TEXTS[0], TEXTS[1]], {}),
    "text-classification": (TEXTS, {"top_k": None}),
    "token-classification": (TEXTS, {}),
    "fill-mask": (["the cat sat on the [MASK]."], {"top_k": 3}),
}


@pytest.mark.slow  # the module's five exports take ~40 s on 2 cores
@pytest.mark.parametrize("task", list(PIPELINE_CASES))
def test_ort_model_in_pipeline_equals_pytorch_pipeline(bert_exports, task):
    source, folder = bert_exports[task]
    inputs, kwargs = PIPELINE_CASES[task]
    ort_pipe = pipeline(task, model=ORT_CLASSES[task].from_pretrained(folder))  # tokenizer from the export folder
    torch_pipe = pipeline(task, model=source)
    for batch_size in (1, 2):
        got = ort_pipe(inputs, batch_size=batch_size, **kwargs)
        expected = torch_pipe(inputs, batch_size=batch_size, **kwargs)
        _assert_close(got, expected)


@pytest.mark.slow  # the module's five exports take ~40 s on 2 cores
def test_question_answering_pipeline(bert_exports):
    source, folder = bert_exports["question-answering"]
    question, context = "where did the cat sit?", "the cat sat on the mat in the kitchen."
    got = pipeline("question-answering", model=ORT_CLASSES["question-answering"].from_pretrained(folder))(
        question=question, context=context, top_k=2)
    expected = pipeline("question-answering", model=source)(question=question, context=context, top_k=2)
    _assert_close(got, expected)


def _assert_close(got, expected):
    if isinstance(expected, dict):
        assert got.keys() == expected.keys()
        for k in expected:
            _assert_close(got[k], expected[k])
    elif isinstance(expected, (list, tuple)):
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            _assert_close(a, b)
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, abs=1e-4)
    else:
        assert got == expected


_SMALL = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
              max_position_embeddings=64, num_labels=3)
OTHER_FAMILIES = {  # family -> (config, model class, config kwargs, task, the graph's inputs)
    "roberta": ("RobertaConfig", "RobertaForMaskedLM", {**TINY_ENCODER, "type_vocab_size": 1, "pad_token_id": 1},
                "fill-mask", ["input_ids", "attention_mask"]),
    "xlm-roberta": ("XLMRobertaConfig", "XLMRobertaForSequenceClassification",
                    {**_SMALL, "max_position_embeddings": 70, "pad_token_id": 1}, "text-classification",
                    ["input_ids", "attention_mask"]),
    "distilbert": ("DistilBertConfig", "DistilBertForSequenceClassification", TINY_DISTILBERT,
                   "text-classification", ["input_ids", "attention_mask"]),
    "mpnet": ("MPNetConfig", "MPNetForMaskedLM", {**_SMALL, "max_position_embeddings": 70}, "fill-mask",
              ["input_ids", "attention_mask"]),
    "deberta-v2": ("DebertaV2Config", "DebertaV2ForTokenClassification",
                   {**_SMALL, "relative_attention": True, "position_buckets": 16, "pos_att_type": ["p2c", "c2p"],
                    "max_relative_positions": 32, "position_biased_input": False, "type_vocab_size": 2},
                   "token-classification", ["input_ids", "attention_mask", "token_type_ids"]),
    "modernbert": ("ModernBertConfig", "ModernBertForSequenceClassification",
                   {**_SMALL, "num_hidden_layers": 3, "global_attn_every_n_layers": 2, "local_attention": 4,
                    "pad_token_id": 0}, "text-classification", ["input_ids", "attention_mask"]),
}


@pytest.mark.parametrize("family", list(OTHER_FAMILIES))
def test_every_encoder_family_exports_with_dynamo(tmp_path, family):
    config_name, model_name, kwargs, task, inputs = OTHER_FAMILIES[family]
    source = hf_checkpoint(tmp_path / "pt", config_name, model_name, **kwargs)
    folder = export(source, tmp_path / "onnx", task=task)
    assert json.loads((folder / "export.json").read_text())["exporter"] == "dynamo"
    ort_model = ORT_CLASSES[task].from_pretrained(folder)
    assert ort_model.input_names == inputs
    ours = getattr(auto, TASKS[task][0]).from_pretrained(source).eval()
    batch = _batch(ours.config.vocab_size)
    batch["input_ids"][:, 0] = 0  # RoBERTa's positions start after pad_token_id: a realistic first token
    if "token_type_ids" in inputs:
        batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
        batch["token_type_ids"][:, 5:] = 1  # a second segment
    with torch.no_grad():
        expected = ours(**batch).logits
    torch.testing.assert_close(ort_model(**batch).logits, expected, atol=1e-4, rtol=0)


def test_from_pretrained_export_true_uses_the_cache(tmp_path):
    source = hf_checkpoint(tmp_path / "pt", "BertConfig", "BertModel", **TINY_ENCODER)
    model = runtime.ORTModelForFeatureExtraction.from_pretrained(source, export=True, cache_dir=tmp_path / "cache",
                                                                 intra_op_num_threads=1,
                                                                 graph_optimization_level="extended")
    first = os.path.getmtime(os.path.join(model.name_or_path, "model.onnx"))
    again = runtime.ORTModelForFeatureExtraction.from_pretrained(source, export=True, cache_dir=tmp_path / "cache")
    assert again.name_or_path == model.name_or_path  # exported once, found the second time
    assert os.path.getmtime(os.path.join(again.name_or_path, "model.onnx")) == first
    ours = auto.AutoModel.from_pretrained(source).eval()
    batch = _batch(ours.config.vocab_size)
    with torch.no_grad():
        expected = ours(**batch).last_hidden_state
    torch.testing.assert_close(model(**batch).last_hidden_state, expected, atol=1e-4, rtol=0)
    # the folder holds a feature-extraction graph: another task's class refuses it by name
    with pytest.raises(InputError, match="exported for task 'feature-extraction'"):
        runtime.ORTModelForSequenceClassification.from_pretrained(model.name_or_path)
    with pytest.raises(UnsupportedOptionError, match="provider="):
        model.to("cuda")
    with pytest.raises(InputError, match="position_ids"):
        model(**batch, position_ids=torch.zeros_like(batch["input_ids"]))
    with pytest.raises(UnsupportedOptionError, match="hidden_states"):
        model(**batch, output_hidden_states=True)
    with pytest.raises(InputError, match="graph_optimization_level"):
        runtime.ORTModelForFeatureExtraction.from_pretrained(model.name_or_path, graph_optimization_level="max")


def test_validation_fails_when_the_graph_differs(tmp_path):
    """A graph that no longer matches the PyTorch model fails validation, which names the output
    and the difference, and removes the graph."""
    from pretrained.exporters.graphs import EncoderGraph

    source = hf_checkpoint(tmp_path / "pt", "BertConfig", "BertForTokenClassification", **TINY_ENCODER)
    folder = export(source, tmp_path / "onnx", task="token-classification")
    model = auto.AutoModelForTokenClassification.from_pretrained(source).eval()
    names = ("input_ids", "attention_mask", "token_type_ids")
    with torch.no_grad():
        model.classifier.bias.add_(0.01)
    graph = EncoderGraph(model, names, ("logits",)).eval()
    with pytest.raises(ExportError, match=r"'logits' differs from PyTorch by 0\.01.* > atol=0\.0001 x"):
        validate_graph(graph, folder / "model.onnx", model.config, "token-classification", names, 1e-4)
    assert not (folder / "model.onnx").exists()
    assert sample_inputs(model.config, "token-classification", names, 2, 4)["attention_mask"][1, :2].sum() == 0


def test_validation_tolerance_scales_with_the_outputs_magnitude(tmp_path):
    """float32 rounding grows with the values: a real 30-layer model's logits (~30) differ between two correct
    float32 runs by ~1e-3 (SmolLM2: PyTorch 2.1e-3 from float64, ONNX Runtime 1.2e-3). The tolerance is atol
    times the output's largest magnitude (at least 1): 1e-4 of the scale, never looser than atol below 1."""
    from pretrained.exporters.graphs import EncoderGraph

    source = hf_checkpoint(tmp_path / "pt", "BertConfig", "BertForTokenClassification", **TINY_ENCODER)
    model = auto.AutoModelForTokenClassification.from_pretrained(source).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(5000.0)  # logits of a few hundred
    names = ("input_ids", "attention_mask", "token_type_ids")
    folder = export(model, tmp_path / "onnx", task="token-classification")
    record = json.loads((folder / "export.json").read_text())
    assert record["max_scaled_diff"] <= 1e-4 and record["atol"] == 1e-4
    with torch.no_grad():
        model.classifier.bias.add_(0.01)  # ~3e-5 of the scale: within
    graph = EncoderGraph(model, names, ("logits",)).eval()
    diff, scaled = validate_graph(graph, folder / "model.onnx", model.config, "token-classification", names, 1e-4)
    assert diff > 0.009 and scaled < 1e-4
    with torch.no_grad():
        model.classifier.bias.add_(1.0)  # ~3e-3 of the scale: a real difference
    with pytest.raises(ExportError, match=r"'logits' differs from PyTorch by 1\.0.* of the largest \|value\|"):
        validate_graph(graph, folder / "model.onnx", model.config, "token-classification", names, 1e-4)


def test_unsupported_task_and_architecture_are_named(tmp_path):
    source = hf_checkpoint(tmp_path / "pt", "BertConfig", "BertModel", **TINY_ENCODER)
    with pytest.raises(UnknownModelError, match="task='object-detection' cannot be exported.*fill-mask"):
        export(source, tmp_path / "out", task="object-detection")
    t5 = hf_checkpoint(tmp_path / "t5", "T5Config", "T5EncoderModel", vocab_size=99, d_model=32, d_kv=8, d_ff=37,
                       num_layers=1, num_heads=4)
    with pytest.raises(UnknownModelError, match="model_type='t5' has no ONNX export for task 'feature-extraction'.*bert"):
        export(auto.AutoModel.from_pretrained(t5), tmp_path / "out", task="feature-extraction")
    with pytest.raises(ExportError, match="needs a pretrained model"):
        export(lambda x: x, tmp_path / "out", task="feature-extraction")
    with pytest.raises(InputError, match="opset=11"):
        export(source, tmp_path / "out", task="feature-extraction", opset=11)


def test_corrupt_or_missing_graph(tmp_path):
    source = hf_checkpoint(tmp_path / "pt", "BertConfig", "BertModel", **TINY_ENCODER)
    with pytest.raises(CheckpointError, match="no ONNX graph 'model.onnx'.*export=True"):
        runtime.ORTModelForFeatureExtraction.from_pretrained(source)
    (tmp_path / "pt" / "model.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(CheckpointError, match="model.onnx' is not a readable ONNX graph"):
        runtime.ORTModelForFeatureExtraction.from_pretrained(source)


def test_missing_extra_says_how_to_install(monkeypatch, tmp_path):
    import sys

    from pretrained.exporters.onnx import require

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r"pip install 'pretrained\[onnx\]'"):
        require("onnxruntime")
    with pytest.raises(ImportError, match="onnxruntime"):
        runtime.ORTModelForFeatureExtraction.from_pretrained(tmp_path)


def test_cli_export(tmp_path, capsys):
    from pretrained.cli import main

    source = hf_checkpoint(tmp_path / "pt", "DistilBertConfig", "DistilBertForTokenClassification", **TINY_DISTILBERT)
    assert main(["export", "onnx", "--model", source, "--task", "token-classification", str(tmp_path / "out")]) == 0
    assert str(tmp_path / "out") in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "export.json").read_text())["task"] == "token-classification"
    assert main(["export", "onnx", "--model", source, "--task", "object-detection", str(tmp_path / "bad")]) == 2
    assert "task='object-detection' cannot be exported" in capsys.readouterr().err


@pytest.mark.slow
def test_dynamic_int8_quantization(bert_exports, tmp_path):
    from pretrained.exporters.quantize import quantize

    _, folder = bert_exports["feature-extraction"]
    out = quantize(folder, tmp_path / "int8")
    record = json.loads((out / "export.json").read_text())["quantization"]
    assert record["mode"] == "dynamic-int8" and record["per_channel"] is True
    assert record["bytes_after"] < record["bytes_before"]
    assert (out / "tokenizer.json").is_file() and (out / "config.json").is_file()
    fp32 = ORT_CLASSES["feature-extraction"].from_pretrained(folder)
    int8 = ORT_CLASSES["feature-extraction"].from_pretrained(out)
    assert any(node.op_type == "DynamicQuantizeLinear" for node in onnx.load(out / "model.onnx").graph.node)
    batch = _batch(fp32.config.vocab_size)
    mask = batch["attention_mask"][..., None].float()
    pooled = [(m(**batch).last_hidden_state * mask).sum(1) / mask.sum(1) for m in (fp32, int8)]
    assert torch.nn.functional.cosine_similarity(*pooled).min() >= 0.99
    with pytest.raises(InputError, match="mode='static-int4'"):
        quantize(folder, tmp_path / "bad", mode="static-int4")


def test_torchscript_exporter(tmp_path):
    """The fallback exporter on its own: recorded, dynamic axes, validated like dynamo's graphs."""
    source = hf_checkpoint(tmp_path / "pt", "BertConfig", "BertForSequenceClassification", **TINY_ENCODER)
    ours = auto.AutoModelForSequenceClassification.from_pretrained(source).eval()
    attention = ours.config.attn_implementation
    folder = export(ours, tmp_path / "onnx", task="text-classification", exporter="torchscript", opset=17)
    assert ours.config.attn_implementation == attention  # eager only while tracing
    record = json.loads((folder / "export.json").read_text())
    assert record["exporter"] == "torchscript" and record["opset"] == 17 and record["max_abs_diff"] <= 1e-4
    batch = _batch(ours.config.vocab_size)
    with torch.no_grad():
        expected = ours(**batch).logits
    got = runtime.ORTModelForSequenceClassification.from_pretrained(folder)(**batch).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_export_cache_follows_the_checkpoint(tmp_path):
    """A checkpoint saved again under the same path gets a fresh export, not the stale cached graph."""
    first = hf_checkpoint(tmp_path / "pt", "DistilBertConfig", "DistilBertModel", seed=0, **TINY_DISTILBERT)
    a = runtime.ORTModelForFeatureExtraction.from_pretrained(first, export=True, cache_dir=tmp_path / "cache")
    hf_checkpoint(tmp_path / "pt", "DistilBertConfig", "DistilBertModel", seed=1, **TINY_DISTILBERT)
    b = runtime.ORTModelForFeatureExtraction.from_pretrained(first, export=True, cache_dir=tmp_path / "cache")
    assert a.name_or_path != b.name_or_path
    batch = _batch(99)
    ours = auto.AutoModel.from_pretrained(first).eval()
    with torch.no_grad():
        expected = ours(**batch).last_hidden_state
    torch.testing.assert_close(b(**batch).last_hidden_state, expected, atol=1e-4, rtol=0)
