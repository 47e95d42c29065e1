"""Tools given to chat templates as Python functions: get_json_schema equals transformers'."""

from __future__ import annotations

import enum
from typing import Any, Literal, Optional, Union

import pytest

hf_utils = pytest.importorskip("transformers.utils")

from pretrained import get_json_schema  # noqa: E402
from pretrained.errors import InputError  # noqa: E402


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


def get_weather(location: str, unit: Unit = Unit.CELSIUS, days: int | None = None) -> dict[str, float]:
    """Get the weather forecast for a place.

    Uses the nearest station.

    Args:
        location: The city and country, e.g. "Paris, France"; long descriptions
            may continue on the next line.
        unit: The temperature unit
        days: How many days ahead to forecast

    Returns:
        A mapping of day to temperature.
    """


def pick(drink: str, size: Literal["s", "m", "l"], ids: list[int], extra: Optional[dict] = None) -> None:
    """Order a drink.

    Args:
        drink: The drink to order (choices: ["tea", "coffee", " cocoa "])
        size: Cup size
        ids: Customer ids
        extra: Anything else
    """


def mixed(a: Union[int, str], b: list[int] | tuple[str, float] | None, c: tuple[int, int], d: Any,
          e: float = 1.5, f: bool = False) -> list[int]:
    """Many kinds of hints.

    Args:
        a: an int or a str
        b: a list or a pair
        c: a pair of ints
        d: anything
        e: a number
        f: a flag

    Returns:
        The ids,
        one per line.

    Raises:
        ValueError: never
    """


class Calculator:
    def multiply(self, x: float, y: float) -> float:
        """Multiply two numbers.

        Args:
            x: The first number
            y: The second number
        """


def no_args() -> str:
    """Say hello."""


@pytest.mark.parametrize("func", [get_weather, pick, mixed, Calculator().multiply, Calculator.multiply, no_args])
def test_schema_equals_transformers(func):
    assert get_json_schema(func) == hf_utils.get_json_schema(func)


def test_errors_name_the_argument():
    def undocumented(x: int):
        """Doc without args."""

    def unannotated(x):
        """Doc.

        Args:
            x: a thing
        """

    def bare(x: int):
        pass

    for func, text in ((undocumented, "'x'"), (unannotated, "'x'"), (bare, "docstring")):
        with pytest.raises(InputError, match=text):
            get_json_schema(func)


def test_chat_template_renders_function_tools_as_transformers(tmp_path):
    hf = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"<unk>": 0, "hi": 1}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    template = "{% for t in tools %}{{ t | tojson }}\n{% endfor %}{% for m in messages %}{{ m.content }}{% endfor %}"
    (tmp_path / "tokenizer_config.json").write_text('{"unk_token": "<unk>", "chat_template": %s}'
                                                    % __import__("json").dumps(template))
    from pretrained import AutoTokenizer

    ours = AutoTokenizer.from_pretrained(tmp_path)
    theirs = hf.AutoTokenizer.from_pretrained(tmp_path)
    chat = [{"role": "user", "content": "hi"}]
    tools = [get_weather, pick, {"type": "function", "function": {"name": "raw"}}]
    assert ours.apply_chat_template(chat, tools=tools, tokenize=False) == \
        theirs.apply_chat_template(chat, tools=tools, tokenize=False)
    with pytest.raises(InputError, match="tools"):
        ours.apply_chat_template(chat, tools=["not a tool"], tokenize=False)
