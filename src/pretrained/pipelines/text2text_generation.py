"""text2text-generation, summarization and translation: an encoder-decoder's generate().

Each input gives [{"generated_text"}] ({"summary_text"}, {"translation_text"}); a list of inputs
gives one such dict per input (a list of dicts per input with num_return_sequences > 1).
`config.task_specific_params[task]` (T5's "summarize: " prefix and lengths) apply as in
Transformers; translation_xx_to_yy picks the languages.
"""

from __future__ import annotations

from .base import Pipeline


class Text2TextGenerationPipeline(Pipeline):
    task = "text2text-generation"
    return_name = "generated"
    generation_defaults = {"max_new_tokens": 256, "num_beams": 4}

    def __call__(self, inputs=None, *args, **kwargs):
        result = super().__call__(inputs, *args, **kwargs)
        if isinstance(inputs, list) and all(isinstance(x, str) for x in inputs) and all(len(r) == 1 for r in result):
            return [r[0] for r in result]
        return result

    def _sanitize_parameters(self, return_tensors=None, return_text=None, return_type=None,
                             clean_up_tokenization_spaces=None, truncation=None, stop_sequence=None,
                             **generate_kwargs):
        pre = {"truncation": truncation} if truncation is not None else {}
        post = {}
        if return_tensors:
            post["return_type"] = "tensors"
        elif return_text is not None:
            post["return_type"] = "text" if return_text else "tensors"
        if clean_up_tokenization_spaces is not None:
            post["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        if stop_sequence is not None:
            ids = self.tokenizer.encode(stop_sequence, add_special_tokens=False)
            generate_kwargs["eos_token_id"] = ids[0]
        for key in ("src_lang", "tgt_lang"):  # translation keys; plain text2text ignores them
            if key in generate_kwargs:
                pre[key] = generate_kwargs.pop(key)
        return pre, generate_kwargs, post

    def preprocess(self, inputs, truncation=False, **kwargs) -> dict:
        self.check_text(inputs)
        prefix = self.prefix or ""
        enc = self.tokenizer(prefix + inputs, return_tensors="pt", truncation=truncation)
        return {k: enc[k] for k in ("input_ids", "attention_mask") if k in enc}

    def _forward(self, model_inputs: dict, **generate_kwargs) -> dict:
        b = model_inputs["input_ids"].shape[0]
        out = self.model.generate(**model_inputs, **self.generate_kwargs(generate_kwargs))
        if not hasattr(out, "shape"):
            out = out.sequences
        return {"output_ids": out.reshape(b, out.shape[0] // b, -1)}

    def postprocess(self, model_outputs: dict, return_type: str = "text", clean_up_tokenization_spaces=False):
        records = []
        for ids in model_outputs["output_ids"][0].tolist():
            if return_type == "tensors":
                records.append({f"{self.return_name}_token_ids": ids})
            else:
                text = self.tokenizer.decode(ids, skip_special_tokens=True,
                                             clean_up_tokenization_spaces=clean_up_tokenization_spaces)
                records.append({f"{self.return_name}_text": text})
        return records


class SummarizationPipeline(Text2TextGenerationPipeline):
    task = "summarization"
    return_name = "summary"


class TranslationPipeline(Text2TextGenerationPipeline):
    task = "translation"
    return_name = "translation"

    def __init__(self, *args, src_lang=None, tgt_lang=None, **kwargs):
        self.src_lang, self.tgt_lang = src_lang, tgt_lang
        super().__init__(*args, **kwargs)

    def _apply_task_specific_params(self) -> None:
        if self.task == "translation" and self.src_lang and self.tgt_lang:
            self.task = f"translation_{self.src_lang}_to_{self.tgt_lang}"
        super()._apply_task_specific_params()

    def preprocess(self, inputs, truncation=False, src_lang=None, tgt_lang=None, **kwargs) -> dict:
        build = getattr(self.tokenizer, "_build_translation_inputs", None)
        src_lang, tgt_lang = src_lang or self.src_lang, tgt_lang or self.tgt_lang
        if build is not None and src_lang and tgt_lang:
            self.check_text(inputs)
            enc = build(inputs, return_tensors="pt", truncation=truncation, src_lang=src_lang, tgt_lang=tgt_lang)
            return {k: enc[k] for k in ("input_ids", "attention_mask") if k in enc}
        return super().preprocess(inputs, truncation=truncation)


