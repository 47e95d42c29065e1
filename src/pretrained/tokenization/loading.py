"""Tokenizer files in and out: from_pretrained reads tokenizer_config.json, special_tokens_map.json,
added_tokens.json, chat_template.jinja and the class's vocabulary files; save_pretrained writes
them back (every write atomic), in the same layout Transformers reads.
"""

from __future__ import annotations

import json
import os

from ..errors import CheckpointError
from ..files import atomic_write_text, read_json_object
from ..hub import HubOptions, resolve_file
from .checks import check_tokenizer_config

CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_FILE = "special_tokens_map.json"
ADDED_TOKENS_FILE = "added_tokens.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
# Keys of tokenizer_config.json that describe the file, not the tokenizer's arguments.
_NOT_ARGUMENTS = ("tokenizer_class", "auto_map", "name_or_path", "tokenizer_file", "processor_class")


def read_tokenizer_config(name_or_path, options: HubOptions) -> dict:
    path = resolve_file(name_or_path, CONFIG_FILE, options, required=False)
    return check_tokenizer_config(read_json_object(path), path) if path else {}


def load_tokenizer(cls, name_or_path, *init_inputs, **kwargs):
    """Build `cls` from a folder or repo id: config keys, then files, then the caller's kwargs win."""
    options = kwargs.pop("_hub_options", None) or HubOptions.pop_from(kwargs)
    kwargs.pop("trust_remote_code", None)
    kwargs.pop("use_fast", None)
    name = os.fspath(name_or_path)
    config = read_tokenizer_config(name, options)
    special_path = resolve_file(name, SPECIAL_TOKENS_FILE, options, required=False)
    if special_path:
        for key, value in check_tokenizer_config(read_json_object(special_path), special_path).items():
            config.setdefault(key, value)
    added_path = resolve_file(name, ADDED_TOKENS_FILE, options, required=False)
    if added_path:
        decoder = dict(config.get("added_tokens_decoder") or {})
        for token, index in read_json_object(added_path).items():
            decoder.setdefault(str(index), {"content": token, "special": False})
        config["added_tokens_decoder"] = decoder
    template_path = resolve_file(name, CHAT_TEMPLATE_FILE, options, required=False)
    if template_path and "chat_template" not in kwargs:
        with open(template_path, encoding="utf-8") as f:
            config["chat_template"] = f.read()
    for key in _NOT_ARGUMENTS:
        config.pop(key, None)

    files = {}
    for key, filename in cls.vocab_files_names.items():
        path = resolve_file(name, filename, options, required=False)
        if path is not None:
            files[key] = path
    from_json = getattr(cls, "arguments_from_tokenizer_json", None)
    json_path = None
    if from_json is not None and cls.missing_files(files):  # a Python backend, a folder with only tokenizer.json
        json_path = resolve_file(name, "tokenizer.json", options, required=False)
    if json_path is not None:
        found = from_json(json_path)
        # tokenizer_config.json's settings win over what the file's pipeline implies
        added = {**found.pop("added_tokens_decoder"), **(config.get("added_tokens_decoder") or {})}
        config = {**found, **config, "added_tokens_decoder": added}
    else:
        cls.check_files(name, files)
    arguments = {**config, **files, **kwargs}
    arguments["name_or_path"] = name
    return cls(*init_inputs, **arguments)


def save_tokenizer(tok, save_directory, legacy_format=None) -> tuple[str, ...]:
    """Write tokenizer_config.json, special_tokens_map.json, the chat template and the vocabulary files."""
    save_directory = os.fspath(save_directory)
    if os.path.isfile(save_directory):
        raise CheckpointError(f"save_pretrained needs a folder, and {save_directory} is a file")
    os.makedirs(save_directory, exist_ok=True)
    config = {k: v for k, v in tok.init_kwargs.items()
              if k not in _NOT_ARGUMENTS and k not in tok.vocab_files_names and k != "added_tokens_decoder"
              and k != "chat_template" and not k.endswith("_file")}
    config.update(tok.special_tokens_map)
    config.pop("additional_special_tokens", None)
    if tok.additional_special_tokens:
        config["extra_special_tokens"] = tok.additional_special_tokens
    config["model_max_length"] = tok.model_max_length
    config["padding_side"] = tok.padding_side
    config["truncation_side"] = tok.truncation_side
    config["clean_up_tokenization_spaces"] = tok.clean_up_tokenization_spaces
    config["model_input_names"] = list(tok.model_input_names)
    name = type(tok).__name__
    config["tokenizer_class"] = name[:-4] if name.endswith("Fast") else name
    config["added_tokens_decoder"] = tok.added_tokens_config()
    written = []

    path = os.path.join(save_directory, CHAT_TEMPLATE_FILE)
    if isinstance(tok.chat_template, str):
        atomic_write_text(path, tok.chat_template)
        written.append(path)
    elif isinstance(tok.chat_template, dict):  # named templates stay in the config, as Transformers reads them
        config["chat_template"] = [{"name": k, "template": v} for k, v in tok.chat_template.items()]

    path = os.path.join(save_directory, CONFIG_FILE)
    atomic_write_text(path, json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    written.append(path)
    path = os.path.join(save_directory, SPECIAL_TOKENS_FILE)
    atomic_write_text(path, json.dumps(tok.special_tokens_map, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    written.append(path)
    written += tok.save_vocabulary(save_directory)
    return tuple(written)
