"""text-generation: continue a prompt, or answer a chat, with a causal LM's generate().

A string prompt gives [{"generated_text": prompt + continuation}] (`return_full_text=False`: the
continuation only; `return_tensors=True`: {"generated_token_ids"}); a chat (a list of
{"role", "content"} messages) is rendered with the tokenizer's chat template and gives the
messages plus the assistant's reply. Generation keywords (max_new_tokens, do_sample,
temperature, top_k, top_p, streamer, ...) go to generate(); what neither they nor the model's
generation_config set takes Transformers 5's defaults: 256 new tokens, sampling at temperature 0.7.
Batches are left-padded, so batched prompts continue exactly as single ones.
"""

from __future__ import annotations

from .base import Pipeline, PipelineError

_TOKENIZER_KEYS = ("add_special_tokens", "truncation", "padding", "max_length")


class Chat:
    """A list of messages marked as one input (a list of strings is a batch of prompts)."""

    def __init__(self, messages):
        for message in messages:
            if not (isinstance(message, dict) and "role" in message and "content" in message):
                raise PipelineError("a chat is a list of {'role': ..., 'content': ...} messages")
        self.messages = list(messages)


def is_chat(x) -> bool:
    return isinstance(x, (list, tuple)) and len(x) > 0 and isinstance(x[0], dict)


class TextGenerationPipeline(Pipeline):
    task = "text-generation"
    padding_side = "left"
    # Transformers 5's defaults, for what the call and the model's generation config leave unset
    generation_defaults = {"max_new_tokens": 256, "do_sample": True, "temperature": 0.7}

    def __call__(self, text_inputs=None, *args, **kwargs):
        if is_chat(text_inputs):
            return super().__call__(Chat(text_inputs), *args, **kwargs)
        if isinstance(text_inputs, (list, tuple)) and text_inputs and all(is_chat(x) for x in text_inputs):
            return super().__call__([Chat(x) for x in text_inputs], *args, **kwargs)
        return super().__call__(text_inputs, *args, **kwargs)

    @property
    def pad_token_id(self) -> int | None:
        pad = getattr(self.tokenizer, "pad_token_id", None)
        if pad is None:  # padded positions are masked out; any id will do, as generate() uses eos
            pad = getattr(self.model.generation_config, "pad_token_id", None) or self.tokenizer.eos_token_id
            if isinstance(pad, list):
                pad = pad[0]
        return pad

    def _sanitize_parameters(self, return_full_text=None, return_tensors=None, return_text=None,
                             clean_up_tokenization_spaces=None, prefix=None, continue_final_message=None,
                             skip_special_tokens=None, tokenizer_encode_kwargs=None, **generate_kwargs):
        pre = {k: generate_kwargs.pop(k) for k in _TOKENIZER_KEYS if k in generate_kwargs}
        if "max_length" in pre:  # Transformers' rule: max_length is a generate() argument too
            generate_kwargs["max_length"] = pre["max_length"]
        if prefix is not None:
            pre["prefix"] = prefix
        if continue_final_message is not None:
            pre["continue_final_message"] = continue_final_message
        if tokenizer_encode_kwargs:
            pre["tokenizer_encode_kwargs"] = tokenizer_encode_kwargs
        post = {}
        if return_full_text is not None and return_tensors:
            raise PipelineError("return_full_text and return_tensors cannot both be set")
        if return_tensors:
            post["return_type"] = "tensors"
        elif return_full_text is not None:
            post["return_type"] = "full" if return_full_text else "new"
        elif return_text is not None:
            post["return_type"] = "full" if return_text else "tensors"
        if clean_up_tokenization_spaces is not None:
            post["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        if skip_special_tokens is not None:
            post["skip_special_tokens"] = skip_special_tokens
        if continue_final_message is not None:
            post["continue_final_message"] = continue_final_message
        return pre, generate_kwargs, post

    def preprocess(self, prompt, prefix="", continue_final_message=None, tokenizer_encode_kwargs=None,
                   **tokenizer_kwargs) -> dict:
        tokenizer_kwargs.update(tokenizer_encode_kwargs or {})
        if isinstance(prompt, Chat):
            tokenizer_kwargs.pop("add_special_tokens", None)
            if continue_final_message is None:
                continue_final_message = prompt.messages[-1]["role"] == "assistant"
            enc = self.tokenizer.apply_chat_template(
                prompt.messages, add_generation_prompt=not continue_final_message,
                continue_final_message=continue_final_message, return_dict=True, return_tensors="pt",
                **tokenizer_kwargs)
        else:
            self.check_text(prompt, "prompt")
            enc = self.tokenizer(prefix + prompt, return_tensors="pt", **tokenizer_kwargs)
        inputs = {k: enc[k] for k in ("input_ids", "attention_mask") if k in enc}
        inputs["prompt_text"] = prompt
        return inputs

    def _forward(self, model_inputs: dict, **generate_kwargs) -> dict:
        input_ids = model_inputs["input_ids"]
        if input_ids.shape[1] == 0:
            raise PipelineError("text-generation got an empty prompt (no tokens); give some text")
        sequences = self.model.generate(input_ids=input_ids, attention_mask=model_inputs.get("attention_mask"),
                                        **self.generate_kwargs(generate_kwargs))
        if not hasattr(sequences, "shape"):
            sequences = sequences.sequences
        b, prompt_length = input_ids.shape
        new = sequences[:, prompt_length:].reshape(b, sequences.shape[0] // b, -1)  # (B, returns, new)
        return {"new_tokens": new, "prompt_ids": input_ids, "prompt_mask": model_inputs.get("attention_mask"),
                "prompt_text": model_inputs["prompt_text"]}

    def postprocess(self, model_outputs: dict, return_type: str = "full", clean_up_tokenization_spaces=None,
                    skip_special_tokens=None, continue_final_message=None) -> list[dict]:
        skip = True if skip_special_tokens is None else skip_special_tokens
        prompt = model_outputs["prompt_text"]
        prompt_ids = model_outputs["prompt_ids"][0]
        if model_outputs.get("prompt_mask") is not None:
            prompt_ids = prompt_ids[model_outputs["prompt_mask"][0].bool()]  # drop left padding
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        eos = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        records = []
        for new in model_outputs["new_tokens"][0].tolist():
            end = next((i + 1 for i, t in enumerate(new) if t in eos), len(new))
            new = new[:end]  # in a batch, rows that stopped early are padded after their eos
            if return_type == "tensors":
                records.append({"generated_token_ids": prompt_ids.tolist() + new})
                continue
            text = self.tokenizer.decode(new, skip_special_tokens=skip,
                                         clean_up_tokenization_spaces=clean_up_tokenization_spaces)
            if return_type == "full":
                if isinstance(prompt, Chat):
                    final = prompt.messages[-1]["role"] == "assistant" if continue_final_message is None \
                        else continue_final_message
                    if final:
                        last = prompt.messages[-1]
                        text = prompt.messages[:-1] + [{"role": last["role"], "content": last["content"] + text}]
                    else:
                        text = prompt.messages + [{"role": "assistant", "content": text}]
                else:
                    text = prompt + text
            records.append({"generated_text": text})
        return records
