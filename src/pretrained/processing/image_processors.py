"""Image processors: resize -> center crop -> rescale -> normalize, each step switched by its `do_*` field,
with Transformers' field names, defaults and numbers (its PIL backend: Pillow does the resizing).

    processor = ViTImageProcessor.from_pretrained(folder)        # preprocessor_config.json
    processor(images, return_tensors="pt")["pixel_values"]         # (B, 3, H, W) float32

A call may override any field (`processor(img, size={"height": 64, "width": 64})`); other keywords are refused.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import numpy as np

from ..errors import InputError
from . import image as ops
from .base import BatchFeature, ProcessorConfig

IMAGENET_STANDARD_MEAN = [0.5, 0.5, 0.5]
IMAGENET_STANDARD_STD = [0.5, 0.5, 0.5]
IMAGENET_DEFAULT_MEAN = [0.485, 0.456, 0.406]
IMAGENET_DEFAULT_STD = [0.229, 0.224, 0.225]
OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def size_dict(size, default_to_square: bool, name: str = "size") -> dict | None:
    """An int, (height, width) or dict -> Transformers' size dict; an int is a square or a shorter edge."""
    if size is None or isinstance(size, dict):
        if isinstance(size, dict) and not ({"height", "width"} <= set(size) or "shortest_edge" in size):
            raise InputError(f"{name}={size!r}: expected {{'height', 'width'}} or {{'shortest_edge'[, 'longest_edge']}}")
        return size
    if isinstance(size, int):
        return {"height": size, "width": size} if default_to_square else {"shortest_edge": size}
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return {"height": size[0], "width": size[1]}
    raise InputError(f"{name}={size!r}: expected an int, (height, width) or a dict")


class BaseImageProcessor(ProcessorConfig):
    """The shared pipeline; subclasses change only the `defaults` (and whether an int size is square)."""

    model_input_names = ["pixel_values"]
    default_to_square = True
    defaults: dict[str, Any] = {
        "do_resize": True, "size": {"height": 224, "width": 224}, "resample": 2, "do_center_crop": False,
        "crop_size": None, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": IMAGENET_STANDARD_MEAN, "image_std": IMAGENET_STANDARD_STD, "do_convert_rgb": None,
    }

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.size = size_dict(self.size, self.default_to_square)
        self.crop_size = size_dict(self.crop_size, True, "crop_size")

    def __call__(self, images, **kwargs: Any) -> BatchFeature:
        return self.preprocess(images, **kwargs)

    def preprocess(self, images, return_tensors=None, input_data_format: str | None = None,
                   data_format: str = "channels_first", **overrides: Any) -> BatchFeature:
        unknown = set(overrides) - set(self.defaults)
        if unknown:
            raise InputError(f"{type(self).__name__} got unknown arguments {sorted(unknown)}; "
                             f"it takes return_tensors, input_data_format, data_format and {sorted(self.defaults)}")
        if data_format not in ("channels_first", "channels_last"):
            raise InputError(f"data_format={data_format!r}; expected 'channels_first' or 'channels_last'")
        p = {name: getattr(self, name) for name in self.defaults}
        p.update({name: value for name, value in overrides.items() if value is not None})  # None: the processor's
        size = size_dict(p["size"], self.default_to_square)
        crop = size_dict(p["crop_size"], True, "crop_size")
        if p["do_resize"] and size is None:
            raise InputError("do_resize=True needs a size")
        if p["do_center_crop"] and crop is None:
            raise InputError("do_center_crop=True needs a crop_size")
        images = ops.flat_images(images)
        counts = Counter(map(id, images))
        for image in images:  # a PIL image given twice is read from its file here, not by two threads at once
            if counts[id(image)] > 1 and ops.is_pil_image(image):
                image.load()
        arrays = ops.map_images(lambda image: self._geometry(image, p, size, crop, input_data_format), images)
        pixels = self._values(arrays, p, data_format)
        if data_format == "channels_last" and isinstance(pixels, list):
            pixels = [np.moveaxis(x, 0, -1) for x in pixels]
        return BatchFeature({"pixel_values": list(pixels) if return_tensors is None else pixels},
                            tensor_type=return_tensors)

    @staticmethod
    def _geometry(image, p: dict, size: dict | None, crop: dict | None, input_data_format: str | None) -> np.ndarray:
        """(C, H, W) of one image, resized and center-cropped as switched (uint8 for 8-bit images)."""
        if isinstance(image, (str, os.PathLike, bytes, bytearray)):
            image = ops.open_image(image)
        x = ops.resize_pil(image, size, int(p["resample"]), bool(p["do_convert_rgb"])) if p["do_resize"] else None
        if x is None:
            x = ops.channels_first(image, bool(p["do_convert_rgb"]), input_data_format)  # (C, H, W)
            if p["do_resize"]:
                x = ops.resize(x, ops.output_size(x.shape[-2:], size), int(p["resample"]))
        if p["do_center_crop"]:
            x = ops.center_crop(x, (crop["height"], crop["width"]))
        return x

    @staticmethod
    def _values(arrays: list, p: dict, data_format: str):
        """Rescale and normalize each (C, H, W) array as switched. 8-bit images go through a table of what
        those steps make of each byte, into one (B, ...) array in `data_format` when the shapes agree."""
        def steps(x):
            if p["do_rescale"]:
                x = ops.rescale(x, p["rescale_factor"])
            if p["do_normalize"]:
                x = ops.normalize(x, p["image_mean"], p["image_std"])
            return x

        if not (p["do_rescale"] or p["do_normalize"]):
            return arrays
        tables = {x.shape[0]: ops.byte_table(steps, x.shape[0]) for x in arrays if x.dtype == np.uint8}

        def one(x):
            if x.dtype != np.uint8:
                return steps(x)
            table = tables[x.shape[0]]
            return ops.look_up(table, x, np.empty(x.shape, table.dtype))

        shapes = {x.shape for x in arrays}
        if len(shapes) > 1 or any(x.dtype != np.uint8 for x in arrays):
            return ops.map_images(one, arrays)
        C, H, W = shapes.pop()
        table = tables[C]
        batch = np.empty((len(arrays), C, H, W) if data_format == "channels_first" else (len(arrays), H, W, C),
                         table.dtype)
        rows = batch if data_format == "channels_first" else np.moveaxis(batch, -1, 1)  # (B, C, H, W) views
        ops.map_images(lambda i: ops.look_up(table, arrays[i], rows[i]), range(len(arrays)))
        return batch


class ViTImageProcessor(BaseImageProcessor):
    """Resize to 224 x 224 (bilinear), rescale to [0, 1], normalize with mean = std = 0.5."""


class CLIPImageProcessor(BaseImageProcessor):
    """Resize the shorter edge to 224 (bicubic), center crop 224 x 224, RGB, normalize with OpenAI's statistics."""

    default_to_square = False
    defaults = {
        **BaseImageProcessor.defaults, "size": {"shortest_edge": 224}, "resample": 3, "do_center_crop": True,
        "crop_size": {"height": 224, "width": 224}, "image_mean": OPENAI_CLIP_MEAN, "image_std": OPENAI_CLIP_STD,
        "do_convert_rgb": True,
    }


IMAGE_PROCESSORS = {cls.__name__: cls for cls in (ViTImageProcessor, CLIPImageProcessor)}
