"""Checks on tokenizer files before they reach the Rust `tokenizers` library or the tokenizer classes.

`tokenizers` trusts some fields and panics on them (a `pyo3_runtime.PanicException`, which is not an
`Exception` and escapes ordinary handlers), or silently emits ids outside the vocabulary that fail
later inside the model. These checks turn such files into a CheckpointError naming file and field.
"""

from __future__ import annotations

from ..errors import CheckpointError


def check_tokenizer_json(data, path: str) -> None:
    """Validate what `tokenizers` would panic on or silently misuse: the post-processor's special tokens."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object, not {type(data).__name__}")
    known = _known_ids(data, path)
    _check_processor(data.get("post_processor"), known, path, "post_processor")


def _known_ids(data: dict, path: str) -> set[int] | None:
    """Every id the vocabulary and the added tokens define; None when the model's vocab is not readable here."""
    model = data.get("model")
    vocab = model.get("vocab") if isinstance(model, dict) else None
    if isinstance(vocab, dict):
        ids = {v for v in vocab.values() if isinstance(v, int)}
    elif isinstance(vocab, list):  # Unigram: [piece, score] pairs, ids are positions
        ids = set(range(len(vocab)))
    else:
        return None
    for i, token in enumerate(data.get("added_tokens") or []):
        if not (isinstance(token, dict) and isinstance(token.get("id"), int)
                and isinstance(token.get("content"), str)):
            raise CheckpointError(f"{path}: added_tokens[{i}] must be an object with an int 'id' and a string "
                                  f"'content', got {str(token)[:80]}")
        ids.add(token["id"])
    return ids


def _check_processor(proc, known: set[int] | None, path: str, field: str) -> None:
    if proc is None:
        return
    if not isinstance(proc, dict):
        raise CheckpointError(f"{path}: {field} must be an object or null, got {type(proc).__name__}")
    kind = proc.get("type")
    if kind == "Sequence":
        processors = proc.get("processors")
        if not isinstance(processors, list):
            raise CheckpointError(f"{path}: {field}.processors must be a list")
        for i, sub in enumerate(processors):
            _check_processor(sub, known, path, f"{field}.processors[{i}]")
    elif kind in ("BertProcessing", "RobertaProcessing"):
        for name in ("cls", "sep"):
            pair = proc.get(name)
            if not (isinstance(pair, list) and len(pair) == 2
                    and isinstance(pair[0], str) and isinstance(pair[1], int)):
                raise CheckpointError(f"{path}: {field}.{name} must be [token, id], got {pair!r}")
            _check_id(pair[1], known, path, f"{field}.{name}")
    elif kind == "TemplateProcessing":
        specials = proc.get("special_tokens")
        if not isinstance(specials, dict):
            raise CheckpointError(f"{path}: {field}.special_tokens must be an object")
        for name, spec in specials.items():
            ids = spec.get("ids") if isinstance(spec, dict) else None
            tokens = spec.get("tokens") if isinstance(spec, dict) else None
            if not (isinstance(ids, list) and ids and isinstance(tokens, list) and len(tokens) == len(ids)
                    and all(isinstance(i, int) for i in ids)):
                raise CheckpointError(f"{path}: {field}.special_tokens[{name!r}] must have as many 'ids' (ints) as "
                                      f"'tokens', at least one, got {str(spec)[:120]}")
            for i in ids:
                _check_id(i, known, path, f"{field}.special_tokens[{name!r}]")
        for template in ("single", "pair"):
            for piece in proc.get(template) or []:
                special = piece.get("SpecialToken") if isinstance(piece, dict) else None
                named = special.get("id") if isinstance(special, dict) else None
                if isinstance(special, dict) and (not isinstance(named, str) or named not in specials):
                    raise CheckpointError(f"{path}: {field}.{template} names the special token {named!r}, "
                                          f"which {field}.special_tokens does not define")


def _check_id(token_id: int, known: set[int] | None, path: str, field: str) -> None:
    if known is not None and token_id not in known:
        raise CheckpointError(f"{path}: {field} uses token id {token_id}, which is not in the vocabulary")


SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def check_tokenizer_config(data: dict, path: str) -> dict:
    """The types tokenizer_config.json / special_tokens_map.json fields must have, checked before use."""
    for key in SPECIAL_TOKEN_KEYS:
        if data.get(key) is not None:
            _check_token(data[key], path, key)
    for key in ("additional_special_tokens", "extra_special_tokens"):
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, dict) and key == "extra_special_tokens":  # v5: {name: token}
            items = value.items()
        elif isinstance(value, list):
            items = enumerate(value)
        else:
            raise CheckpointError(f"{path}: {key} must be a list of tokens, got {type(value).__name__}")
        for i, token in items:
            _check_token(token, path, f"{key}[{i!r}]")
    for key in ("tokenizer_class", "processor_class"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise CheckpointError(f"{path}: {key} must be a class name (a string), got {data[key]!r}"[:300])
    names = data.get("model_input_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise CheckpointError(f"{path}: model_input_names must be a list of strings, got {names!r}"[:300])
    decoder = data.get("added_tokens_decoder")
    if decoder is not None:
        if not isinstance(decoder, dict):
            raise CheckpointError(f"{path}: added_tokens_decoder must be an object of id -> token")
        for index, token in decoder.items():
            if not str(index).isdigit():
                raise CheckpointError(f"{path}: added_tokens_decoder has the key {index!r}, expected a token id")
            _check_token(token, path, f"added_tokens_decoder[{index!r}]")
    length = data.get("model_max_length")
    if length is not None and (isinstance(length, bool) or not isinstance(length, (int, float)) or length != length):
        raise CheckpointError(f"{path}: model_max_length must be a number, got {length!r}")
    template = data.get("chat_template")
    if template is not None and not isinstance(template, (str, list, dict)):
        raise CheckpointError(f"{path}: chat_template must be a string or a list of named templates, "
                              f"got {type(template).__name__}")
    if isinstance(template, list) and not all(
            isinstance(t, dict) and isinstance(t.get("name"), str) and isinstance(t.get("template"), str)
            for t in template):
        raise CheckpointError(f"{path}: chat_template as a list must hold {{'name': str, 'template': str}} objects")
    for key in ("padding_side", "truncation_side"):
        if data.get(key) is not None and data[key] not in ("left", "right"):
            raise CheckpointError(f"{path}: {key} must be 'left' or 'right', got {data[key]!r}")
    return data


def _check_token(token, path: str, field: str) -> None:
    """A token is a string, or an AddedToken object with a string 'content'."""
    if isinstance(token, str):
        return
    if isinstance(token, dict) and isinstance(token.get("content"), str):
        return
    raise CheckpointError(f"{path}: {field} must be a string or an object with a string 'content', "
                          f"got {str(token)[:80]}")
