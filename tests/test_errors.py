"""Every error the library raises on purpose is a `pretrained.errors` type (docs/ARCHITECTURE.md), which
still subclasses the builtin Transformers raises there, so `except ValueError` keeps working."""

from __future__ import annotations

import ast
import pathlib

import pytest

from pretrained.errors import CheckpointError, InputError, UnsupportedOptionError

SRC = pathlib.Path(__file__).resolve().parent.parent / "src" / "pretrained"
PLAIN = {"ValueError", "OSError", "EnvironmentError", "IOError"}  # the last two are OSError's aliases

def _plain_raises(path: pathlib.Path) -> list[str]:
    """`raise ValueError(...)` and the like in one file, as 'line: name', except an Auto class's
    __init__, which refuses to be instantiated with OSError as Transformers' Auto classes do."""
    found = []

    def visit(node, auto_init=False):
        if isinstance(node, ast.ClassDef):
            for child in node.body:
                init = isinstance(child, ast.FunctionDef) and child.name == "__init__"
                visit(child, init and node.name.lstrip("_").startswith("Auto"))
            return
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            name = exc.id if isinstance(exc, ast.Name) else None
            if name in PLAIN and not (auto_init and name in ("OSError", "EnvironmentError")):
                found.append(f"{node.lineno}: {name}")
        for child in ast.iter_child_nodes(node):
            visit(child, auto_init)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def test_no_plain_value_or_os_errors():
    offenders = {path.relative_to(SRC).as_posix(): raises for path in sorted(SRC.rglob("*.py"))
                 if (raises := _plain_raises(path))}
    assert not offenders, f"raise a pretrained.errors type instead (errors.py says which): {offenders}"


def test_the_walk_finds_plain_raises(tmp_path):
    path = tmp_path / "sample.py"
    path.write_text("class AutoThing:\n    def __init__(self):\n        raise EnvironmentError('use from_pretrained')\n"
                    "def f(x):\n    if x:\n        raise ValueError(x)\n    raise OSError\n")
    assert _plain_raises(path) == ["6: ValueError", "7: OSError"]


@pytest.fixture(params=["python", "fast"])
def tokenizer(request, tmp_path):
    from pretrained.tokenization import BertTokenizer, BertTokenizerFast

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"]))
    return (BertTokenizer if request.param == "python" else BertTokenizerFast)(vocab_file=str(vocab))


@pytest.mark.parametrize("kwargs,message", [
    (dict(padding="sideways"), "padding='sideways' is not one of"),
    (dict(truncation="middle"), "truncation='middle' is not one of"),
    (dict(padding_side="up"), "padding_side must be 'right' or 'left', got 'up'"),
    (dict(return_tensors="tf"), "return_tensors='tf' is not a tensor type"),
])
def test_bad_tokenizer_argument_is_input_error(tokenizer, kwargs, message):
    with pytest.raises(InputError, match=message) as info:
        tokenizer("hello world", **kwargs)
    assert isinstance(info.value, ValueError)  # what Transformers raises there


def test_refused_options_and_bad_inputs(tokenizer):
    with pytest.raises(UnsupportedOptionError, match="return_tensors='mlx'"):
        tokenizer("hello", return_tensors="mlx")
    with pytest.raises(InputError, match="text has type int"):
        tokenizer(3)
    with pytest.raises(ValueError, match="return_assistant_tokens_mask=True"):
        tokenizer.apply_chat_template([{"role": "user", "content": "hello"}], chat_template="{{ messages }}",
                                      return_assistant_tokens_mask=True)


def test_registry_and_weights_arguments():
    from pretrained import registry
    from pretrained.models.bert import BertConfig
    from pretrained.weights import parse_size

    with pytest.raises(InputError, match="register_config: BertConfig.model_type is 'bert'.*'not-bert'"):
        registry.register_config("not-bert", BertConfig)
    with pytest.raises(InputError, match="already registered"):
        registry.register_config("bert", BertConfig)
    with pytest.raises(InputError, match="max_shard_size='five'"):
        parse_size("five")


def test_corrupt_sentencepiece_file_names_the_file(tmp_path):
    from pretrained.tokenization.convert import SentencePieceModel

    path = tmp_path / "tokenizer.model"
    path.write_bytes(b"\x0a\xff")  # field 1, length-delimited, a length running past the end
    with pytest.raises(CheckpointError, match="tokenizer.model is not a SentencePiece model file: truncated"):
        SentencePieceModel(str(path))
