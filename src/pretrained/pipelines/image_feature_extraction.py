"""image-feature-extraction: a vision model's features of images (ViT, CLIP's vision tower, ...).

Inputs as image-classification's (paths, bytes, PIL images, arrays, tensors; URLs refused). Output as
Transformers': per image the model's first output as nested lists, [1][patches + 1][hidden] for ViTModel and
CLIPVisionModel (the last hidden state; CLIPVisionModelWithProjection's first output is its image embeddings),
or with `pool=True` the pooled output [1][hidden] (`pooler_output`: ViT's tanh pooler, CLIP's normed class
token). `return_tensors=True` returns the torch tensor instead of lists; `image_processor_kwargs` go to the
image processor.
"""

from __future__ import annotations

import numpy as np
import torch

from ..processing.image import load_image
from .base import Pipeline, PipelineError


class ImageFeatureExtractionPipeline(Pipeline):
    task = "image-feature-extraction"

    def __call__(self, inputs=None, *args, **kwargs):
        if "images" in kwargs:
            inputs = kwargs.pop("images")
        if inputs is None:
            raise PipelineError("image-feature-extraction needs an image (a path, bytes, a PIL image or an array)")
        if isinstance(inputs, np.ndarray):  # one image, not a stream of rows
            return super().__call__([inputs], *args, **kwargs)[0]
        return super().__call__(inputs, *args, **kwargs)

    def _sanitize_parameters(self, image_processor_kwargs=None, return_tensors=None, pool=None, timeout=None):
        if timeout is not None:
            raise PipelineError("timeout= bounds image downloads; pretrained does not download images (pass a file, "
                                "bytes or an image)")
        if image_processor_kwargs is not None and not isinstance(image_processor_kwargs, dict):
            raise PipelineError(f"image_processor_kwargs must be a dict, got {type(image_processor_kwargs).__name__}")
        post = {}
        if pool is not None:
            post["pool"] = bool(pool)
        if return_tensors is not None:
            post["return_tensors"] = bool(return_tensors)
        return dict(image_processor_kwargs or {}), {}, post

    def preprocess(self, image, **image_processor_kwargs) -> dict:
        if not isinstance(image, (np.ndarray, torch.Tensor)):
            image = load_image(image)
        pixels = self.image_processor(image, return_tensors="pt", **image_processor_kwargs)["pixel_values"]
        return {"pixel_values": pixels.to(self.model.dtype)}

    def _forward(self, model_inputs: dict) -> dict:
        out = self.model(pixel_values=model_inputs["pixel_values"], return_dict=True)
        pooled = getattr(out, "pooler_output", None)
        return {"features": out[0], **({"pooled": pooled} if pooled is not None else {})}

    def postprocess(self, model_outputs: dict, pool: bool = False, return_tensors: bool = False):
        if pool:
            if "pooled" not in model_outputs:
                raise PipelineError(f"pool=True needs a pooled output, and {type(self.model).__name__} returns none "
                                    "(a ViTModel built with add_pooling_layer=False?); leave pool unset for the "
                                    "per-patch features")
            features = model_outputs["pooled"]
        else:
            features = model_outputs["features"]
        return features if return_tensors else features.tolist()
