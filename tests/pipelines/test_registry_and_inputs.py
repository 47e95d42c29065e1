"""pipeline(): task names, aliases, inference from config, loaded models, devices; bad inputs."""

from __future__ import annotations

import pytest
import torch

from pretrained import AutoModelForSequenceClassification, AutoTokenizer, pipeline
from pretrained.pipelines import (FeatureExtractionPipeline, TextClassificationPipeline, TokenClassificationPipeline,
                                  TranslationPipeline)
from pretrained.pipelines.registry import check_task


def test_aliases_and_translation_names():
    assert check_task("sentiment-analysis")[0] == "text-classification"
    assert check_task("ner")[0] == "token-classification"
    name, spec, options = check_task("translation_en_to_de")
    assert spec.pipeline_class == "TranslationPipeline" and options == {"src_lang": "en", "tgt_lang": "de"}


def test_unknown_task_lists_known_and_closest():
    with pytest.raises(ValueError) as e:
        pipeline("token-clasification")
    assert "Did you mean 'token-classification'?" in str(e.value) and "fill-mask" in str(e.value)
    with pytest.raises(ValueError, match="needs a task, a model"):
        pipeline()


def test_task_inferred_from_architectures(ckpt, minilm_path):
    assert isinstance(pipeline(model=ckpt("seqcls")), TextClassificationPipeline)
    assert isinstance(pipeline(model=ckpt("tokcls")), TokenClassificationPipeline)
    assert isinstance(pipeline(model=minilm_path), FeatureExtractionPipeline)


def test_loaded_model_and_tokenizer_device_and_dtype(ckpt):
    path = ckpt("seqcls")
    model = AutoModelForSequenceClassification.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    pipe = pipeline("text-classification", model=model, tokenizer=tokenizer, device=-1)
    assert pipe.device == torch.device("cpu") and pipe.model is model
    assert pipe("hello") == pipeline("text-classification", model=path)("hello")
    assert pipeline("text-classification", model=path, dtype=torch.float64).model.dtype == torch.float64
    with pytest.raises(ValueError, match="device"):
        pipeline("text-classification", model=path, device="nonsense-device")


def test_missing_model_says_what_to_pass():
    with pytest.raises(ValueError, match="pretrained download"):
        pipeline("question-answering")
    with pytest.raises(OSError, match="/no/such/folder"):
        pipeline("feature-extraction", model="/no/such/folder")


def test_inputs_generator_and_dataset_like(minilm_path):
    pipe = pipeline("feature-extraction", model=minilm_path)
    texts = ["one", "two words", "three words here"]
    expected = pipe(texts)
    out = pipe((t for t in texts), batch_size=2)
    assert not isinstance(out, list)  # a generator in, results streamed out
    got = list(out)
    assert len(got) == 3 and all(torch.allclose(torch.tensor(a), torch.tensor(b), atol=1e-5) for a, b in zip(got, expected))


def test_bad_inputs(ckpt, minilm_path):
    import transformers

    features = pipeline("feature-extraction", model=minilm_path)
    expected = transformers.pipeline("feature-extraction", model=minilm_path)("")
    assert torch.allclose(torch.tensor(features("")), torch.tensor(expected), atol=1e-4)  # [CLS] [SEP]
    assert features([]) == []
    for bad in (None, 3):
        with pytest.raises(ValueError, match="expects a string"):
            features(bad)
    overlong = "word " * 600
    with pytest.raises(ValueError, match="at most 512.*truncation=True"):
        features(overlong)
    assert len(features(overlong, truncation=True)[0]) == 512
    classify = pipeline("text-classification", model=ckpt("seqcls"))
    with pytest.raises(ValueError, match="at most 512"):
        classify(overlong)
    assert classify(overlong, truncation=True)[0]["label"] in ("NEG", "NEU", "POS")
    with pytest.raises(ValueError, match="no mask token"):
        pipeline("fill-mask", model=ckpt("mlm"))("no mask here")
    with pytest.raises(ValueError, match="candidate label"):
        pipeline("zero-shot-classification", model=ckpt("nli"))("text", candidate_labels=[])
    with pytest.raises(ValueError, match="candidate strings"):
        pipeline("sentence-similarity")("query", sentences=[])
    with pytest.raises(ValueError, match="batch_size"):
        features(["a"], batch_size=0)


def test_translation_pipeline_class():
    assert check_task("translation_en_to_fr")[1].load_class() is TranslationPipeline


def test_loaded_model_remembers_its_folder(minilm_path):
    """MiniLM's config.json says _name_or_path "nreimers/MiniLM-L6-H384-uncased"; as in Transformers,
    a loaded model's name_or_path is the folder it came from, so a pipeline over the loaded model
    finds its tokenizer and pooling files there (offline)."""
    from pretrained import AutoConfig, AutoModel

    import transformers

    model = AutoModel.from_pretrained(minilm_path)
    assert model.name_or_path == transformers.AutoModel.from_pretrained(minilm_path).name_or_path == minilm_path
    assert AutoConfig.from_pretrained(minilm_path).name_or_path == minilm_path
    pipe = pipeline("sentence-similarity", model=model)
    assert pipe("a cat", sentences=["a kitten"]) == pipeline("sentence-similarity")("a cat", sentences=["a kitten"])


def test_every_hub_keyword_goes_to_loading_not_to_the_task(ckpt):
    from pretrained.hub import HUB_KWARGS, HubOptions

    values = {name: getattr(HubOptions(), name) for name in HUB_KWARGS}  # the defaults: loading is unchanged
    pipe = pipeline("text-classification", model=ckpt("seqcls"), **values)
    assert pipe("Hello world!")[0]["label"] in ("NEG", "NEU", "POS")
