"""feature-extraction: the model's last hidden states, or pooled sentence embeddings.

Transformers' output is kept by default: per input a nested list [1][tokens][hidden]. With
`pooling=` ("mean", "cls", "max", "mean_sqrt_len", "last", or "auto" for the checkpoint's
sentence-transformers pooling config) each input gives one vector [hidden], L2-normalized with
`normalize=True` ("auto" follows the checkpoint's modules.json).
"""

from __future__ import annotations

import torch

from ..defaults import sentence_settings
from .base import Pipeline, PipelineError

POOLINGS = ("mean", "cls", "max", "mean_sqrt_len", "last")


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """(B, T, H) hidden states and (B, T) attention mask -> (B, H) sentence embeddings."""
    mask = mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "last":
        last = mask.squeeze(-1).cumsum(-1).argmax(-1)  # index of the last real token
        return hidden[torch.arange(hidden.shape[0]), last]
    if mode == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).amax(1)
    summed = (hidden * mask).sum(1)
    count = mask.sum(1).clamp(min=1e-9)
    return summed / (count.sqrt() if mode == "mean_sqrt_len" else count)


class FeatureExtractionPipeline(Pipeline):
    task = "feature-extraction"
    token_outputs = ("last_hidden_state", "attention_mask")

    def _sanitize_parameters(self, truncation=None, tokenize_kwargs=None, return_tensors=None, pooling=None,
                             normalize=None, **kwargs):
        if kwargs:
            raise PipelineError(f"{self.task} got unknown options {sorted(kwargs)}; it takes truncation, "
                                "tokenize_kwargs, return_tensors, pooling and normalize")
        tokenize_kwargs = dict(tokenize_kwargs or {})
        if truncation is not None:
            if "truncation" in tokenize_kwargs:
                raise PipelineError("truncation given twice: as an argument and inside tokenize_kwargs")
            tokenize_kwargs["truncation"] = truncation
        post = {}
        if return_tensors is not None:
            post["return_tensors"] = return_tensors
        if pooling is not None or normalize is not None:
            post["pooling"], post["normalize"] = self._pooling(pooling, normalize)
        return tokenize_kwargs, {}, post

    def _pooling(self, pooling, normalize) -> tuple[str | None, bool]:
        settings = None
        if pooling == "auto" or normalize == "auto" or (pooling is None and normalize):
            settings = sentence_settings(self.model_path)
        if pooling in ("auto", None):
            pooling = settings["pooling"] if settings else None
        if pooling is not None and pooling not in POOLINGS:
            raise PipelineError(f"pooling={pooling!r}; expected one of {', '.join(POOLINGS)}, 'auto' or None")
        if normalize == "auto":
            normalize = settings["normalize"]
        return pooling, bool(normalize)

    def preprocess(self, inputs, **tokenize_kwargs) -> dict:
        self.check_text(inputs)
        return self.check_length(dict(self.tokenizer(inputs, return_tensors="pt", **tokenize_kwargs)))

    def _forward(self, model_inputs: dict) -> dict:
        inputs = {k: v for k, v in model_inputs.items() if isinstance(v, torch.Tensor)}
        hidden = self.model(**inputs)[0]
        mask = model_inputs.get("attention_mask")
        return {"last_hidden_state": hidden,
                "attention_mask": mask if mask is not None else torch.ones_like(model_inputs["input_ids"])}

    def postprocess(self, model_outputs: dict, return_tensors: bool = False, pooling: str | None = None,
                    normalize: bool = False):
        hidden = model_outputs["last_hidden_state"].cpu()
        if pooling is not None:
            hidden = pool(hidden.float(), model_outputs["attention_mask"].cpu(), pooling)[0]
            if normalize:
                hidden = torch.nn.functional.normalize(hidden, dim=-1)
        elif normalize:
            hidden = torch.nn.functional.normalize(hidden, dim=-1)
        return hidden if return_tensors else hidden.tolist()
