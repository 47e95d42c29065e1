"""Preprocessing for vision and speech models: image processors, feature extractors, multimodal processors
and their Auto classes. Each module is imported on first use (Pillow and torch only when needed)."""

from importlib import import_module

_EXPORTS = {
    "BatchFeature": "base",
    "BaseImageProcessor": "image_processors",
    "ViTImageProcessor": "image_processors",
    "CLIPImageProcessor": "image_processors",
    "CLIPProcessor": "clip",
    "WhisperFeatureExtractor": "whisper",
    "WhisperProcessor": "whisper",
    "AutoImageProcessor": "auto",
    "AutoFeatureExtractor": "auto",
    "AutoProcessor": "auto",
    "load_image": "image",
}


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pretrained.processing' has no attribute {name!r}")
    return getattr(import_module(f"pretrained.processing.{_EXPORTS[name]}"), name)


__all__ = sorted(_EXPORTS)
