"""apply_chat_template: Jinja2 chat templates rendered in a sandbox (no attribute access to Python
internals, immutable containers), with the globals and filters Hub templates expect
(raise_exception, strftime_now, tojson, namespace, {% generation %}); tools given as functions become
JSON schemas through tools.get_json_schema.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from functools import lru_cache

from ..errors import InputError, UnsupportedOptionError
from .tools import tool_schemas


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # Jinja's own tojson escapes HTML characters, which would change the prompt text.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _raise_exception(message):
    from jinja2.exceptions import TemplateError

    raise TemplateError(message)


def _strftime_now(fmt):
    return datetime.now().strftime(fmt)


MAX_LOOP_STEPS = 1_000_000  # loop iterations per render: real templates take a few per message
MAX_OUTPUT = 10_000_000  # characters a render (or one repetition inside it) may produce
_budget = threading.local()


def _bounded(iterable):
    """Yield the loop's items, charging each to this render's step budget."""
    for item in iterable:
        _budget.steps -= 1
        if _budget.steps < 0:
            raise InputError(f"chat template: more than {MAX_LOOP_STEPS:,} loop iterations in one render "
                             "(an unbounded loop?)")
        yield item


def render_bounded(template, **context) -> str:
    """template.render(**context) within the step, output and recursion bounds, as an InputError past them."""
    _budget.steps = MAX_LOOP_STEPS
    parts, size = [], 0
    try:
        for chunk in template.generate(**context):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise InputError(f"chat template: the rendered text exceeds {MAX_OUTPUT:,} characters")
            parts.append(chunk)
    except RecursionError:
        raise InputError("chat template: recursion too deep (a macro or recursive loop that does not end?)") from None
    except (MemoryError, OverflowError) as e:
        raise InputError(f"chat template: the render needs more memory than allowed ({type(e).__name__})") from None
    return "".join(parts)


@lru_cache(maxsize=32)
def compile_template(source: str):
    import jinja2
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationBlock(Extension):
        """{% generation %}...{% endgeneration %} marks assistant text; rendered as its body."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.Scope(body, lineno=lineno)

    class BoundedEnvironment(ImmutableSandboxedEnvironment):
        """The sandbox with bounds on time and memory: every for-loop draws its items through
        `_bounded` (a step budget per render), and `*` / `**` refuse results past MAX_OUTPUT."""

        intercepted_binops = frozenset(["*", "**"])

        def _parse(self, source, name, filename):
            tree = super()._parse(source, name, filename)
            for loop in tree.find_all(jinja2.nodes.For):
                loop.iter = jinja2.nodes.Call(jinja2.nodes.Name("_bounded", "load"), [loop.iter], [], None, None)
            return tree

        def call_binop(self, context, operator, left, right):
            if operator == "*" and isinstance(left, int) and isinstance(right, (str, list, tuple)):
                left, right = right, left
            if operator == "*" and isinstance(left, (str, list, tuple)) and isinstance(right, int):
                if len(left) * right > MAX_OUTPUT:
                    raise InputError(f"chat template: a repetition of {len(left) * right:,} items exceeds the "
                                     f"{MAX_OUTPUT:,} allowed")
            if operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(right) > 4096:
                raise InputError(f"chat template: the power {left} ** {right} is too large to compute")
            return super().call_binop(context, operator, left, right)

    env = BoundedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlock, loopcontrols])
    env.globals["_bounded"] = _bounded
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(source)


def get_chat_template(tok, chat_template=None, tools=None) -> str:
    """The template text: the argument, a named one of the tokenizer's, or the tokenizer's only one."""
    templates = tok.chat_template
    if isinstance(templates, list):  # tokenizer_config.json's [{"name": ..., "template": ...}]
        templates = {t["name"]: t["template"] for t in templates}
    if isinstance(templates, dict):
        if chat_template is not None and chat_template in templates:
            return templates[chat_template]
        if chat_template is not None:
            return chat_template
        if tools is not None and "tool_use" in templates:
            return templates["tool_use"]
        if "default" in templates:
            return templates["default"]
        raise InputError(f"this tokenizer has chat templates {sorted(templates)} but none named 'default': "
                         "pass chat_template= with one of the names")
    if chat_template is not None:
        return chat_template
    if templates is None:
        raise InputError(
            "Cannot use apply_chat_template because this tokenizer does not have a chat template: set "
            "tokenizer.chat_template or pass chat_template=, or add chat_template.jinja next to the tokenizer files"
        )
    return templates


def apply_chat_template(tok, conversation, tools=None, documents=None, chat_template=None,
                        add_generation_prompt=False, continue_final_message=False, tokenize=True, padding=False,
                        truncation=False, max_length=None, return_tensors=None, return_dict=True,
                        return_assistant_tokens_mask=False, tokenizer_kwargs=None, **kwargs):
    """Render one conversation (or a batch) with the chat template; token ids or a BatchEncoding if tokenize."""
    if return_assistant_tokens_mask:
        raise UnsupportedOptionError("return_assistant_tokens_mask=True is not supported by pretrained's chat "
                                     "templates; leave it False")
    if continue_final_message and add_generation_prompt:
        raise InputError("continue_final_message and add_generation_prompt are not compatible: the first continues "
                         "the last message, the second starts a new assistant message")
    if isinstance(conversation, (list, tuple)) and len(conversation) == 0:
        raise InputError("Cannot apply chat template to an empty conversation. Provide at least one message.")
    source = get_chat_template(tok, chat_template, tools)
    template = compile_template(source)
    batched = isinstance(conversation, (list, tuple)) and isinstance(conversation[0], (list, tuple))
    conversations = conversation if batched else [conversation]
    schemas = None if tools is None else tool_schemas(tools)
    context = {**tok.special_tokens_map, **kwargs}
    rendered = []
    for chat in conversations:
        messages = [{k: v for k, v in message.items() if v is not None} for message in chat]
        text = render_bounded(template, messages=messages, tools=schemas, documents=documents,
                              add_generation_prompt=add_generation_prompt, **context)
        if continue_final_message:
            text = _cut_after_final_message(text, messages[-1], continue_final_message)
        rendered.append(text)
    if not batched:
        rendered = rendered[0]
    if not tokenize:
        return rendered
    out = tok(rendered, padding=padding, truncation=truncation, max_length=max_length, add_special_tokens=False,
              return_tensors=return_tensors, **(tokenizer_kwargs or {}))
    return out if return_dict else out["input_ids"]


def _cut_after_final_message(text: str, message: dict, marker) -> str:
    """Drop what the template writes after the last message, so generation continues it."""
    content = message.get("content")
    if isinstance(content, list):  # multimodal content: the last text part
        texts = [part["text"] for part in content if part.get("type") == "text"]
        content = texts[-1] if texts else ""
    if isinstance(marker, str):
        content = marker
    if not isinstance(content, str) or content.strip() not in text:
        raise InputError("continue_final_message is set but the final message does not appear in the rendered "
                         "chat; check the template")
    at = text.rindex(content.strip())
    if text[at:at + len(content.lstrip())] == content.lstrip():
        return text[:at + len(content.lstrip())]
    return text[:at + len(content.strip())]

