"""CLIPProcessor: CLIP's tokenizer and image processor behind one call.

    processor(text=["a cat", "a dog"], images=img, return_tensors="pt", padding=True)
    -> {"input_ids", "attention_mask", "pixel_values"}

Saved as the tokenizer's files plus preprocessor_config.json with `processor_class`, the layout of the
published CLIP checkpoints, which every Transformers version reads.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import InputError
from ..hub import hub_kwargs
from .base import BatchFeature


class CLIPProcessor:
    attributes = ["image_processor", "tokenizer"]

    def __init__(self, image_processor=None, tokenizer=None, **kwargs: Any):
        if kwargs.get("feature_extractor") is not None and image_processor is None:  # Transformers 4's name
            image_processor = kwargs.pop("feature_extractor")
        kwargs.pop("feature_extractor", None)
        if kwargs:
            raise InputError(f"CLIPProcessor got unknown arguments {sorted(kwargs)}")
        if image_processor is None or tokenizer is None:
            raise InputError("CLIPProcessor needs both an image_processor and a tokenizer")
        self.image_processor = image_processor
        self.tokenizer = tokenizer

    @property
    def feature_extractor(self):
        return self.image_processor

    @property
    def model_input_names(self) -> list[str]:
        names = list(getattr(self.tokenizer, "model_input_names", ["input_ids", "attention_mask"]))
        return names + [n for n in self.image_processor.model_input_names if n not in names]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs: Any):
        from ..tokenization.auto import AutoTokenizer
        from .auto import AutoImageProcessor

        hub = hub_kwargs(kwargs)  # the tokenizer takes the rest
        image_processor = AutoImageProcessor.from_pretrained(pretrained_model_name_or_path, **hub)
        tokenizer = AutoTokenizer.from_pretrained(pretrained_model_name_or_path, **kwargs)
        return cls(image_processor=image_processor, tokenizer=tokenizer)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        os.makedirs(save_directory, exist_ok=True)
        self.tokenizer.save_pretrained(save_directory, **kwargs)
        self.image_processor.extra["processor_class"] = type(self).__name__
        self.image_processor.save_pretrained(save_directory)

    def __call__(self, text=None, images=None, return_tensors=None, **kwargs: Any) -> BatchFeature:
        """Tokenizer keywords (padding, truncation, max_length, ...) go to the tokenizer; the image processor's
        own field names (size, do_center_crop, ...) go to it."""
        if text is None and images is None:
            raise InputError("CLIPProcessor needs text, images or both")
        image_kwargs = {k: kwargs.pop(k) for k in list(kwargs)
                        if k in self.image_processor.defaults or k in ("input_data_format", "data_format")}
        out = {}
        if text is not None:
            kwargs.setdefault("return_token_type_ids", False)  # CLIP's text model takes none
            out.update(self.tokenizer(text, return_tensors=return_tensors, **kwargs))
        elif kwargs:
            raise InputError(f"CLIPProcessor got tokenizer arguments {sorted(kwargs)} but no text")
        if images is not None:
            out.update(self.image_processor(images, return_tensors=return_tensors, **image_kwargs))
        return BatchFeature(out)

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)

    def __repr__(self) -> str:
        return f"CLIPProcessor(image_processor={self.image_processor!r}, tokenizer={self.tokenizer!r})"
