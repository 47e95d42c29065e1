"""Whisper exported with task automatic-speech-recognition (encoder graph over input_features with every
decoder layer's cross keys/values, one merged decoder step): ORTModelForSpeechSeq2Seq and
OVModelForSpeechSeq2Seq generate our PyTorch model's tokens (greedy, beam, timestamps), and
pipeline("automatic-speech-recognition") over the ORT model gives the PyTorch pipeline's text and times."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow  # a Whisper export, ~15 s on 2 cores
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytest.importorskip("transformers")

from pretrained import WhisperFeatureExtractor, WhisperForConditionalGeneration, pipeline  # noqa: E402
from pretrained.errors import InputError, UnsupportedOptionError  # noqa: E402
from pretrained.exporters.onnx import export  # noqa: E402
from pretrained.exporters.runtime import ORTModelForSpeechSeq2Seq  # noqa: E402

from test_asr_pipeline import FEATURES, SR, write_asr_checkpoint  # noqa: E402
from test_whisper_features import speechlike  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(our PyTorch model, its ORTModelForSpeechSeq2Seq, the export folder)."""
    root = tmp_path_factory.mktemp("whisper-onnx")
    asr_folder = write_asr_checkpoint(root / "pt")
    folder = export(asr_folder, root / "onnx")  # the task from the class
    ours = WhisperForConditionalGeneration.from_pretrained(asr_folder).eval()
    return ours, ORTModelForSpeechSeq2Seq.from_pretrained(folder), folder


def _features(seconds=(4.0, 2.5)):
    extractor = WhisperFeatureExtractor(**FEATURES)
    clips = [speechlike(s, i) for i, s in enumerate(seconds)]
    return extractor(clips, sampling_rate=SR, return_tensors="pt").input_features


def test_export_records_two_graphs_over_features(exported):
    _, ort_model, folder = exported
    record = json.loads((folder / "export.json").read_text())
    assert record["task"] == "automatic-speech-recognition" and record["exporter"] == "dynamo"
    assert record["graphs"]["encoder_model.onnx"]["inputs"] == ["input_features"]
    assert record["graphs"]["encoder_model.onnx"]["outputs"][1:3] == ["cross.0.key", "cross.0.value"]
    assert record["max_abs_diff"] <= 1e-4
    for name in ("generation_config.json", "processor_config.json", "tokenizer.json"):  # as the checkpoint has them
        assert (folder / name).is_file(), name


@pytest.mark.parametrize("options", [dict(num_beams=1), dict(num_beams=3), dict(num_beams=1, return_timestamps=True)],
                         ids=["greedy", "beam", "timestamps"])
def test_generate_equals_pytorch_tokens(exported, options):
    ours, ort_model, _ = exported
    features = _features()
    expected = ours.generate(features, max_new_tokens=12, **options)
    got = ort_model.generate(features, max_new_tokens=12, **options)
    assert torch.equal(got, expected)


def test_text_inputs_are_refused_by_name(exported):
    _, ort_model, _ = exported
    features = _features((2.0,))
    with pytest.raises(InputError, match="input_ids"):
        ort_model.get_encoder()(input_features=features, input_ids=torch.ones(1, 3, dtype=torch.long))
    with pytest.raises(InputError, match="input_ids"):
        ort_model(input_ids=torch.ones(1, 3, dtype=torch.long), decoder_input_ids=torch.tensor([[101]]))


def test_asr_pipeline_over_the_ort_model(exported):
    ours, ort_model, folder = exported
    clip = speechlike(4.0, 3)
    over_ort = pipeline("automatic-speech-recognition", model=ort_model, max_new_tokens=12)
    over_torch = pipeline("automatic-speech-recognition", model=str(ours.name_or_path), max_new_tokens=12)
    assert over_ort(clip) == over_torch(clip)
    assert over_ort(clip, return_timestamps=True) == over_torch(clip, return_timestamps=True)
    long = np.concatenate([speechlike(20.0, 4), speechlike(15.0, 5)])  # 35 s: two windows, decoded in turn
    assert over_ort(long, max_new_tokens=6) == over_torch(long, max_new_tokens=6)
    ort_model.generation_config.alignment_heads = [[1, 0]]  # as real checkpoints: word times read these heads
    try:
        with pytest.raises(UnsupportedOptionError, match="attentions"):  # which the exported graphs do not return
            over_ort(clip, return_timestamps="word")
    finally:
        ort_model.generation_config.alignment_heads = None


def test_openvino_generates_the_same_tokens(exported):
    pytest.importorskip("openvino")
    from pretrained.exporters.openvino import OVModelForSpeechSeq2Seq

    ours, _, folder = exported
    features = _features((3.0,))
    expected = ours.generate(features, max_new_tokens=10)
    assert torch.equal(OVModelForSpeechSeq2Seq.from_pretrained(folder).generate(features, max_new_tokens=10), expected)
