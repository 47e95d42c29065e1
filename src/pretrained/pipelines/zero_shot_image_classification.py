"""zero-shot-image-classification: rank any labels for an image with CLIP.

Each label becomes a caption (`hypothesis_template`, default "This is a photo of {}."); the image's
similarity logits over the captions are softmaxed. Output as Transformers': [{"score", "label"}], best first.
"""

from __future__ import annotations

import numpy as np
import torch

from ..processing.image import load_image
from .base import Pipeline, PipelineError
from .zero_shot_classification import parse_labels


class ZeroShotImageClassificationPipeline(Pipeline):
    task = "zero-shot-image-classification"

    def __call__(self, image=None, *args, **kwargs):
        if "images" in kwargs:
            image = kwargs.pop("images")
        if len(args) == 1 and "candidate_labels" not in kwargs:
            kwargs["candidate_labels"] = args[0]
        elif args:
            raise PipelineError(f"zero-shot-image-classification takes (image, candidate_labels); got extra {args}")
        if isinstance(image, np.ndarray):  # one image, not a stream of rows
            return super().__call__([image], **kwargs)[0]
        return super().__call__(image, **kwargs)

    def _sanitize_parameters(self, candidate_labels=None, hypothesis_template=None, tokenizer_kwargs=None):
        pre = {}
        if candidate_labels is not None:
            pre["candidate_labels"] = parse_labels(candidate_labels)
        if hypothesis_template is not None:
            pre["hypothesis_template"] = hypothesis_template
        if tokenizer_kwargs is not None:
            pre["tokenizer_kwargs"] = dict(tokenizer_kwargs)
        return pre, {}, {}

    def preprocess(self, image, candidate_labels=None, hypothesis_template="This is a photo of {}.",
                   tokenizer_kwargs=None) -> dict:
        if not candidate_labels:
            raise PipelineError("zero-shot-image-classification needs candidate_labels (a list or a comma-separated string)")
        if hypothesis_template.format(candidate_labels[0]) == hypothesis_template:
            raise PipelineError(f"hypothesis_template={hypothesis_template!r} has no '{{}}' where the label goes")
        if not isinstance(image, (np.ndarray, torch.Tensor)):
            image = load_image(image)
        pixels = self.image_processor(image, return_tensors="pt")["pixel_values"].to(self.model.dtype)
        captions = [hypothesis_template.format(label) for label in candidate_labels]
        text = self.tokenizer(captions, return_tensors="pt", **{"padding": True, **(tokenizer_kwargs or {})})
        text = {k: text[k] for k in ("input_ids", "attention_mask") if k in text}
        # the captions are side data (one set per image): batches stack the images only
        return {"pixel_values": pixels, "text_inputs": text, "candidate_labels": candidate_labels}

    def _forward(self, model_inputs: dict) -> dict:
        logits = []
        for i, text in enumerate(model_inputs["text_inputs"]):
            text = {k: v.to(self.device) for k, v in text.items()}
            out = self.model(pixel_values=model_inputs["pixel_values"][i:i + 1], **text)
            logits.append(out.logits_per_image[0])  # (labels,)
        return {"logits": logits, "candidate_labels": model_inputs["candidate_labels"]}

    def postprocess(self, model_outputs: dict) -> list[dict]:
        scores = model_outputs["logits"].float().softmax(-1).tolist()
        ranked = sorted(zip(scores, model_outputs["candidate_labels"]), key=lambda pair: -pair[0])
        return [{"score": score, "label": label} for score, label in ranked]
