"""Conversations as causal-LM training examples through the tokenizer's chat template, with the loss on the
assistant's tokens only (`assistant_only_loss`, as TRL's SFTTrainer offers).

Which tokens are the assistant's is found without template markers: the conversation is rendered up to each
assistant turn (with the generation prompt) and through it; the tokens the turn adds are its reply, closing
tag included (the model must learn to stop). That needs the template to render a conversation as an
extension of its prefixes, which ChatML-style templates (SmolLM2, Qwen, ...) do; a template that does not
is refused rather than masked wrongly.
"""

from __future__ import annotations

from ..errors import InputError

IGNORE = -100


def _ids(tokenizer, messages: list[dict], generation_prompt: bool) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def chat_example(tokenizer, messages: list[dict], max_length: int | None = None,
                 assistant_only_loss: bool = True) -> dict:
    """{"input_ids", "attention_mask", "labels"} of one conversation; labels are -100 outside the assistant's
    turns when assistant_only_loss. Cut to max_length tokens."""
    if not getattr(tokenizer, "chat_template", None):
        raise InputError("chat examples need a tokenizer with a chat template")
    ids = _ids(tokenizer, messages, generation_prompt=False)
    labels = list(ids)
    if assistant_only_loss:
        labels = [IGNORE] * len(ids)
        for i, message in enumerate(messages):
            if message.get("role") != "assistant":
                continue
            start = _ids(tokenizer, messages[:i], generation_prompt=True)
            end = _ids(tokenizer, messages[:i + 1], generation_prompt=False)
            if ids[:len(start)] != start or ids[:len(end)] != end:
                raise InputError("assistant_only_loss: this chat template does not render a conversation as an "
                                 "extension of its beginning, so the assistant's tokens cannot be found; train on "
                                 "every token instead (assistant_only_loss=False)")
            labels[len(start):len(end)] = ids[len(start):len(end)]
        if all(label == IGNORE for label in labels):
            raise InputError("assistant_only_loss: the conversation has no assistant turn to learn from")
    if max_length is not None:
        ids, labels = ids[:max_length], labels[:max_length]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}
