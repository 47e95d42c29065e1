"""What image processors and feature extractors share: BatchFeature (their output) and ProcessorConfig,
which reads and writes `preprocessor_config.json` with Transformers' keys (unknown keys survive a round trip)."""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import numpy as np

from ..errors import CheckpointError, InputError
from ..files import atomic_write_text, read_json_object
from ..hub import HubOptions, resolve_file

PREPROCESSOR_NAME = "preprocessor_config.json"
TENSOR_TYPES = (None, "pt", "np")


class BatchFeature(dict):
    """A dict of model inputs (`pixel_values`, `input_features`, ...) also readable as attributes."""

    def __init__(self, data: dict | None = None, tensor_type: str | None = None):
        super().__init__(data or {})
        self.convert_to_tensors(tensor_type)

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"BatchFeature has no {name!r}; it holds {sorted(self)}") from None

    def convert_to_tensors(self, tensor_type: str | None = None) -> "BatchFeature":
        """Stack each value into one array ("np") or tensor ("pt"); None leaves lists as they are."""
        tensor_type = getattr(tensor_type, "value", tensor_type)
        if tensor_type not in TENSOR_TYPES:
            raise InputError(f"return_tensors={tensor_type!r}; expected 'pt', 'np' or None")
        if tensor_type is None:
            return self
        for key, value in self.items():
            if isinstance(value, (list, tuple)) and value and isinstance(value[0], np.ndarray):
                shapes = sorted({v.shape for v in value})
                if len(shapes) > 1:
                    raise InputError(f"cannot stack {key!r} into one tensor: shapes {shapes} differ")
                value = np.stack(value)
            elif not isinstance(value, np.ndarray) and not _is_tensor(value):
                value = np.asarray(value)
            if tensor_type == "pt":
                import torch

                self[key] = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(value))
            else:
                self[key] = value if isinstance(value, np.ndarray) else value.numpy()
        return self

    def to(self, *args, **kwargs) -> "BatchFeature":
        """Move tensors (a device) or cast floating tensors (a dtype), as Transformers' BatchFeature.to."""
        import torch

        for key, value in self.items():
            if isinstance(value, torch.Tensor):
                is_dtype = any(isinstance(a, torch.dtype) for a in (*args, *kwargs.values()))
                self[key] = value.to(*args, **kwargs) if value.is_floating_point() or not is_dtype else value
        return self


def _is_tensor(value) -> bool:
    return type(value).__module__.startswith("torch")


class ProcessorConfig:
    """Fields are class-level `defaults`; `from_pretrained` / `save_pretrained` use preprocessor_config.json,
    whose `type_key` ("image_processor_type" or "feature_extractor_type") names the class."""

    defaults: dict[str, Any] = {}
    type_key = "image_processor_type"
    model_input_names: list[str] = []

    def __init__(self, **kwargs: Any):
        for name, default in self.defaults.items():
            setattr(self, name, copy.deepcopy(kwargs.pop(name, default)))
        self.extra = kwargs  # keys this class does not use, written back by save_pretrained

    @classmethod
    def from_dict(cls, config: dict, **kwargs: Any):
        config = {k: v for k, v in config.items() if k != cls.type_key}
        return cls(**{**config, **kwargs})

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs: Any):
        options = HubOptions.pop_from(kwargs)
        return cls.from_dict(load_preprocessor_config(pretrained_model_name_or_path, options), **kwargs)

    def to_dict(self) -> dict[str, Any]:
        fields = {name: copy.deepcopy(getattr(self, name)) for name in self.defaults if getattr(self, name) is not None}
        out = {**copy.deepcopy(self.extra), **fields}
        out[self.type_key] = type(self).__name__
        return out

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, save_directory: str | os.PathLike, **_: Any) -> list[str]:
        if os.path.isfile(save_directory):
            raise CheckpointError(f"save_pretrained needs a folder, {os.fspath(save_directory)!r} is a file")
        os.makedirs(save_directory, exist_ok=True)
        path = os.path.join(save_directory, PREPROCESSOR_NAME)
        atomic_write_text(path, self.to_json_string())
        return [path]

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.to_dict() == other.to_dict()


def load_preprocessor_config(name_or_path, options: HubOptions | None = None) -> dict:
    """preprocessor_config.json of a folder or repo (or the file itself), with errors that name the file."""
    if os.path.isfile(name_or_path):
        path = os.fspath(name_or_path)
    else:
        path = resolve_file(name_or_path, PREPROCESSOR_NAME, options or HubOptions())
    return read_json_object(path)


