"""PretrainedConfig and AutoConfig: round trips, aliases, labels, dtype, validation errors."""

from __future__ import annotations

import json

import pytest

import pretrained
from pretrained import AutoConfig, BertConfig, ConfigError, DistilBertConfig, PretrainedConfig
from pretrained.errors import CheckpointError, UnknownModelError


def test_unknown_keys_survive_round_trip(tmp_path):
    config = BertConfig(hidden_size=64, num_attention_heads=4, my_custom_field={"a": [1, 2]}, rope_note="x")
    config.save_pretrained(tmp_path)
    again = AutoConfig.from_pretrained(tmp_path)
    assert type(again) is BertConfig
    assert again.my_custom_field == {"a": [1, 2]} and again.rope_note == "x"
    assert again.to_dict() == config.to_dict()


def test_transformers_config_json_loads_and_values_match(tmp_path):
    import transformers

    theirs = transformers.BertConfig(hidden_size=48, num_attention_heads=6, num_labels=4, problem_type="regression")
    theirs.save_pretrained(tmp_path)
    ours = AutoConfig.from_pretrained(tmp_path)
    for key in ("hidden_size", "num_attention_heads", "vocab_size", "layer_norm_eps", "problem_type", "pad_token_id"):
        assert getattr(ours, key) == getattr(theirs, key), key
    assert ours.id2label == theirs.id2label and ours.label2id == theirs.label2id and ours.num_labels == 4
    # and transformers reads what we write
    ours.save_pretrained(tmp_path / "back")
    again = transformers.AutoConfig.from_pretrained(tmp_path / "back")
    assert again.hidden_size == 48 and again.id2label == theirs.id2label


def test_id2label_keys_become_ints_and_num_labels_follows(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(
        {"model_type": "bert", "id2label": {"0": "NEG", "1": "POS", "2": "NEU"}, "label2id": {"NEG": 0, "POS": 1, "NEU": 2}}))
    config = AutoConfig.from_pretrained(tmp_path)
    assert config.id2label == {0: "NEG", 1: "POS", 2: "NEU"} and config.num_labels == 3
    config.num_labels = 5
    assert config.id2label[4] == "LABEL_4" and config.label2id["LABEL_4"] == 4


def test_attribute_map_aliases_read_and_write():
    config = DistilBertConfig(hidden_size=64, num_attention_heads=8, num_hidden_layers=3)
    assert (config.dim, config.n_heads, config.n_layers) == (64, 8, 3)
    config.hidden_size = 128
    assert config.dim == 128 and "hidden_size" not in config.to_dict()


def test_dtype_and_torch_dtype_are_one_field():
    import torch

    config = BertConfig(torch_dtype="bfloat16")
    assert config.dtype == torch.bfloat16 and config.torch_dtype == torch.bfloat16
    assert config.to_dict()["dtype"] == "bfloat16"
    config.dtype = torch.float16
    assert config.to_dict()["dtype"] == "float16"


def test_kwargs_override_and_unused_are_returned(tmp_path):
    BertConfig(hidden_size=64, num_attention_heads=4).save_pretrained(tmp_path)
    config, unused = AutoConfig.from_pretrained(tmp_path, hidden_dropout_prob=0.0, not_a_field=1, return_unused_kwargs=True)
    assert config.hidden_dropout_prob == 0.0 and unused == {"not_a_field": 1}


@pytest.mark.parametrize("kwargs,field", [
    (dict(hidden_size=30, num_attention_heads=4), "hidden_size"),
    (dict(hidden_size="768"), "hidden_size"),
    (dict(num_hidden_layers=0), "num_hidden_layers"),
    (dict(layer_norm_eps="small"), "layer_norm_eps"),
    (dict(problem_type="ranking"), "problem_type"),
    (dict(torch_dtype="float7"), "dtype"),
    (dict(position_embedding_type="relative_key"), "position_embedding_type"),
])
def test_wrong_values_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        BertConfig(**kwargs)


def test_corrupt_and_missing_config_name_the_file(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json.*not valid JSON"):
        AutoConfig.from_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="no file 'config.json'"):
        AutoConfig.from_pretrained(tmp_path / "..")
    with pytest.raises(CheckpointError, match="does not exist"):
        AutoConfig.from_pretrained(str(tmp_path / "nowhere" / "deeper"))


def test_unknown_model_type_lists_supported(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "berty"}))
    with pytest.raises(UnknownModelError, match=r"'berty'.*Did you mean 'bert'.*Supported: .*distilbert"):
        AutoConfig.from_pretrained(tmp_path)


def test_register_user_model(tmp_path):
    import torch

    class TinyConfig(PretrainedConfig):
        model_type = "tiny-test"
        hidden_size: int = 4

    class TinyModel(pretrained.PreTrainedModel):
        config_class = TinyConfig

        def __init__(self, config):
            super().__init__(config)
            self.proj = torch.nn.Linear(config.hidden_size, config.hidden_size)
            self.post_init()

        def forward(self, x):
            return self.proj(x)

    AutoConfig.register("tiny-test", TinyConfig, exist_ok=True)
    pretrained.AutoModel.register(TinyConfig, TinyModel, exist_ok=True)
    model = pretrained.AutoModel.from_config(TinyConfig(hidden_size=6))
    model.save_pretrained(tmp_path)
    loaded = pretrained.AutoModel.from_pretrained(tmp_path)
    assert type(loaded) is TinyModel
    torch.testing.assert_close(loaded.proj.weight, model.proj.weight)
    class ClashingConfig(PretrainedConfig):
        model_type = "bert"

    with pytest.raises(ValueError, match="already registered"):
        AutoConfig.register("bert", ClashingConfig)
