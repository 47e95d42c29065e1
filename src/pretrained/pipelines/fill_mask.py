"""fill-mask: the most likely tokens for each mask token of a text.

One mask -> [{"score", "token", "token_str", "sequence"}] (`top_k`, default 5); several masks ->
one such list per mask. `targets` restricts the candidates (a word outside the vocabulary stands
for its first token).
"""

from __future__ import annotations

import torch

from .base import Pipeline, PipelineError


class FillMaskPipeline(Pipeline):
    task = "fill-mask"
    token_outputs = ("logits", "input_ids")

    def __call__(self, inputs=None, *args, **kwargs):
        outputs = super().__call__(inputs, *args, **kwargs)
        if isinstance(inputs, list) and len(inputs) == 1:
            return outputs[0]  # Transformers' format: a one-text list gives that text's result
        return outputs

    def _sanitize_parameters(self, top_k=None, targets=None, tokenizer_kwargs=None):
        if self.tokenizer.mask_token_id is None:
            raise PipelineError("fill-mask needs a tokenizer with a mask_token; this one has none")
        pre = {"tokenizer_kwargs": tokenizer_kwargs} if tokenizer_kwargs is not None else {}
        post = {}
        if targets is not None:
            post["target_ids"] = self.target_ids(targets)
        if top_k is not None:
            if not isinstance(top_k, int) or top_k < 1:
                raise PipelineError(f"top_k={top_k!r}; expected a positive int")
            post["top_k"] = top_k
        return pre, {}, post

    def target_ids(self, targets) -> list[int]:
        targets = [targets] if isinstance(targets, str) else list(targets)
        vocab = self.tokenizer.get_vocab()
        ids = []
        for target in targets:
            index = vocab.get(target)
            if index is None:  # not one token: use the first token of its encoding
                pieces = self.tokenizer(target, add_special_tokens=False, return_attention_mask=False,
                                        return_token_type_ids=False, max_length=1, truncation=True)["input_ids"]
                if not pieces:
                    continue
                index = pieces[0]
            ids.append(index)
        ids = list(set(ids))
        if not ids:
            raise PipelineError(f"targets={targets!r}: none of them maps to a token of the vocabulary")
        return ids

    def preprocess(self, inputs, tokenizer_kwargs=None) -> dict:
        self.check_text(inputs)
        enc = dict(self.tokenizer(inputs, return_tensors="pt", **(tokenizer_kwargs or {})))
        if not (enc["input_ids"] == self.tokenizer.mask_token_id).any():
            raise PipelineError(f"fill-mask: no mask token ({self.tokenizer.mask_token}) in the input {inputs!r}")
        return self.check_length(enc)

    def _forward(self, model_inputs: dict) -> dict:
        return {"logits": self.model(**model_inputs).logits, "input_ids": model_inputs["input_ids"]}

    def postprocess(self, model_outputs: dict, top_k: int = 5, target_ids: list[int] | None = None):
        if target_ids is not None:
            top_k = min(top_k, len(target_ids))
        ids = model_outputs["input_ids"][0].cpu()
        masked = torch.nonzero(ids == self.tokenizer.mask_token_id).squeeze(-1)
        probs = model_outputs["logits"][0, masked].float().cpu().softmax(-1)  # (masks, vocab)
        if target_ids is not None:
            probs = probs[..., torch.tensor(target_ids)]
        values, predictions = probs.topk(top_k)
        single = len(masked) == 1
        result = []
        for i, (row_values, row_predictions) in enumerate(zip(values.tolist(), predictions.tolist())):
            row = []
            for score, p in zip(row_values, row_predictions):
                token = target_ids[p] if target_ids is not None else p
                filled = ids.clone()
                filled[masked[i]] = token
                filled = filled[filled != self.tokenizer.pad_token_id]
                row.append({"score": score, "token": token, "token_str": self.tokenizer.decode([token]),
                            "sequence": self.tokenizer.decode(filled.tolist(), skip_special_tokens=single)})
            result.append(row)
        return result[0] if single else result
