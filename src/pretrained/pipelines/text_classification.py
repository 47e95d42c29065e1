"""text-classification (alias sentiment-analysis): labels and scores from a sequence classifier.

Output as Transformers': one text -> [{"label", "score"}] (the best label); with `top_k=k` the k
best, sorted; `top_k=None` every label. Scores are softmax for single-label models, sigmoid for
one label or multi-label models, raw logits for regression, unless `function_to_apply` says.
"""

from __future__ import annotations

import numpy as np

from .base import Pipeline, PipelineError, softmax

FUNCTIONS = ("softmax", "sigmoid", "none")
_UNSET = object()


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class TextClassificationPipeline(Pipeline):
    task = "text-classification"

    def __call__(self, inputs=None, *args, **kwargs):
        result = super().__call__(inputs, *args, **kwargs)
        # without top_k, one string gives a one-element list of the best label (Transformers' format)
        if isinstance(inputs, str) and "top_k" not in kwargs:
            return [result]
        return result

    def _sanitize_parameters(self, function_to_apply=None, top_k=_UNSET, return_all_scores=None, **tokenizer_kwargs):
        post = {}
        if return_all_scores is not None:  # legacy spelling of top_k=None
            top_k = None if return_all_scores else 1
        if top_k is not _UNSET:
            if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
                raise PipelineError(f"top_k={top_k!r}; expected a positive int or None (every label)")
            post["top_k"] = top_k
        if function_to_apply is not None:
            name = str(getattr(function_to_apply, "value", function_to_apply)).lower()
            if name not in FUNCTIONS:
                raise PipelineError(f"function_to_apply={function_to_apply!r}; expected one of {', '.join(FUNCTIONS)}")
            post["function_to_apply"] = name
        return tokenizer_kwargs, {}, post

    def preprocess(self, inputs, **tokenizer_kwargs) -> dict:
        if isinstance(inputs, dict):
            if "text" not in inputs or not set(inputs) <= {"text", "text_pair"}:
                raise PipelineError("a text-classification input dict has the keys 'text' and optionally 'text_pair'")
            return self.check_length(dict(self.tokenizer(text=inputs["text"], text_pair=inputs.get("text_pair"),
                                                         return_tensors="pt", **tokenizer_kwargs)))
        if isinstance(inputs, (list, tuple)):
            raise PipelineError("a text pair is passed as {'text': ..., 'text_pair': ...}, not as a list")
        self.check_text(inputs)
        return self.check_length(dict(self.tokenizer(inputs, return_tensors="pt", **tokenizer_kwargs)))

    def _forward(self, model_inputs: dict) -> dict:
        return {"logits": self.model(**model_inputs).logits}

    def default_function(self) -> str:
        config = self.model.config
        problem = getattr(config, "problem_type", None)
        if problem == "regression":
            return "none"
        if problem == "multi_label_classification" or config.num_labels == 1:
            return "sigmoid"
        if problem == "single_label_classification" or config.num_labels > 1:
            return "softmax"
        return getattr(config, "function_to_apply", None) or "none"

    def postprocess(self, model_outputs: dict, function_to_apply: str | None = None, top_k=_UNSET):
        logits = model_outputs["logits"][0].float().cpu().numpy()
        function = function_to_apply or self.default_function()
        scores = softmax(logits) if function == "softmax" else sigmoid(logits) if function == "sigmoid" else logits
        id2label = self.model.config.id2label
        if top_k is _UNSET:
            best = int(scores.argmax())
            return {"label": id2label[best], "score": float(scores[best])}
        ranked = sorted(({"label": id2label[i], "score": float(s)} for i, s in enumerate(scores)),
                        key=lambda d: d["score"], reverse=True)
        return ranked if top_k is None else ranked[:top_k]


