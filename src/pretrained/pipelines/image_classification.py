"""image-classification: labels and scores for images from an image classifier (ViT, ...).

Inputs: a file path, raw bytes, a PIL image, a numpy array or a torch tensor, or a list of them; URLs are
refused (pretrained does not download images). Output as Transformers': per image, the `top_k` (default 5,
at most num_labels) best [{"label", "score"}], softmax for single-label models, sigmoid for one label or
multi-label models, raw logits for regression, unless `function_to_apply` says.
"""

from __future__ import annotations

import numpy as np
import torch

from ..processing.image import load_image
from .base import Pipeline, PipelineError, softmax
from .text_classification import FUNCTIONS, sigmoid


class ImageClassificationPipeline(Pipeline):
    task = "image-classification"

    def __call__(self, inputs=None, *args, **kwargs):
        if "images" in kwargs:
            inputs = kwargs.pop("images")
        if inputs is None:
            raise PipelineError("image-classification needs an image (a path, bytes, a PIL image or an array)")
        if isinstance(inputs, np.ndarray):  # one image, not a stream of rows
            return super().__call__([inputs], *args, **kwargs)[0]
        return super().__call__(inputs, *args, **kwargs)

    def _sanitize_parameters(self, top_k=None, function_to_apply=None):
        post = {}
        if top_k is not None:
            if not isinstance(top_k, int) or top_k < 1:
                raise PipelineError(f"top_k={top_k!r}; expected a positive int")
            post["top_k"] = top_k
        if function_to_apply is not None:
            name = str(getattr(function_to_apply, "value", function_to_apply)).lower()
            if name not in FUNCTIONS:
                raise PipelineError(f"function_to_apply={function_to_apply!r}; expected one of {', '.join(FUNCTIONS)}")
            post["function_to_apply"] = name
        return {}, {}, post

    def preprocess(self, image) -> dict:
        if not isinstance(image, (np.ndarray, torch.Tensor)):
            image = load_image(image)
        pixels = self.image_processor(image, return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixels.to(self.model.dtype)}

    def _forward(self, model_inputs: dict) -> dict:
        return {"logits": self.model(pixel_values=model_inputs["pixel_values"]).logits}

    def default_function(self) -> str:
        config = self.model.config
        if config.problem_type == "regression":
            return "none"
        if config.problem_type == "multi_label_classification" or config.num_labels == 1:
            return "sigmoid"
        return "softmax"

    def postprocess(self, model_outputs: dict, function_to_apply: str | None = None, top_k: int = 5) -> list[dict]:
        logits = model_outputs["logits"][0].float().cpu().numpy()
        function = function_to_apply or self.default_function()
        scores = softmax(logits) if function == "softmax" else sigmoid(logits) if function == "sigmoid" else logits
        id2label = self.model.config.id2label
        ranked = sorted(({"label": id2label[i], "score": float(s)} for i, s in enumerate(scores)),
                        key=lambda d: d["score"], reverse=True)
        return ranked[:min(top_k, len(ranked))]
