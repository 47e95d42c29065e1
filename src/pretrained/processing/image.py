"""Image inputs and transforms with Transformers' numbers: PIL / numpy / torch in, channels-first numpy
out; resizing through Pillow with the processor's resampling filter (as Transformers' PIL backend does),
center crop, rescale, normalize.

Pillow is the `vision` extra; it is imported on first use.
"""

from __future__ import annotations

import io
import os
from math import ceil

import numpy as np

from ..errors import InputError

_KINDS = "an image is a path, bytes, a PIL image, a numpy array or a torch tensor"


def pil():
    try:
        import PIL.Image
    except ImportError as e:
        raise ImportError("images need Pillow: pip install 'pretrained[vision]' (or pip install pillow)") from e
    return PIL.Image


def is_pil_image(x) -> bool:
    return type(x).__module__.startswith("PIL.")


def load_image(image):
    """An RGB PIL image, upright per its EXIF orientation (Transformers' load_image), from a path, raw bytes or
    a PIL image; URLs are refused: pretrained does not download images."""
    image = open_image(image)
    from PIL import ImageOps

    return ImageOps.exif_transpose(image).convert("RGB")


def open_image(image):
    """A PIL image as stored (mode, orientation) from a path, raw bytes or a PIL image."""
    Image = pil()
    if is_pil_image(image):
        return image
    if isinstance(image, str) and image.startswith(("http://", "https://")):
        raise InputError(f"image {image!r} is a URL; pretrained does not download images: save it to a file "
                         "(or open it with PIL) and pass that")
    if isinstance(image, (str, os.PathLike)):
        if not os.path.isfile(image):
            raise InputError(f"image file {os.fspath(image)!r} does not exist")
        source, what = image, f"image file {os.fspath(image)!r}"
    elif isinstance(image, (bytes, bytearray)):
        source, what = io.BytesIO(image), f"image bytes ({len(image)} bytes)"
    else:
        raise InputError(f"{_KINDS}; got {type(image).__name__}")
    try:
        loaded = Image.open(source)
        loaded.load()
    except Exception as e:  # Pillow raises several types for unreadable data
        raise InputError(f"{what} is not a readable image: {e}") from e
    return loaded


def flat_images(images) -> list:
    """One image, a list, a nested list or a 4-D batch -> a flat list of images (Transformers' nesting rules)."""
    if isinstance(images, (list, tuple)):
        out = []
        for item in images:
            if isinstance(item, (list, tuple)) or (_is_array(item) and np.ndim(item) == 4):
                out.extend(flat_images(item))
            else:
                out.append(item)
        if not out:
            raise InputError("images is an empty list")
        return out
    if _is_array(images) and np.ndim(images) == 4:
        return list(images)
    return [images]


def _is_array(x) -> bool:
    return isinstance(x, np.ndarray) or type(x).__module__.startswith("torch")


def channels_first(image, do_convert_rgb: bool = False, input_data_format: str | None = None) -> np.ndarray:
    """(C, H, W) numpy array of any supported image; `do_convert_rgb` composites alpha on white and
    repeats a gray channel, as Transformers' processors do."""
    image = open_image(image) if isinstance(image, (str, os.PathLike, bytes, bytearray)) else image
    if is_pil_image(image):
        array = np.array(to_rgb_pil(image)) if do_convert_rgb else np.array(image)
        return array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)
    if type(image).__module__.startswith("torch"):
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise InputError(f"{_KINDS}; got {type(image).__name__}")
    if image.ndim == 2:
        image = image[None]
        input_data_format = "channels_first"
    if image.ndim != 3:
        raise InputError(f"an image array has 2 or 3 dimensions ((H, W), (C, H, W) or (H, W, C)), got shape {image.shape}")
    if input_data_format is None:
        input_data_format = infer_channel_format(image)
    if input_data_format not in ("channels_first", "channels_last"):
        raise InputError(f"input_data_format={input_data_format!r}; expected 'channels_first' or 'channels_last'")
    if input_data_format == "channels_last":
        image = np.moveaxis(image, -1, 0)
    return to_rgb_array(image) if do_convert_rgb else image


def infer_channel_format(image: np.ndarray) -> str:
    """Channels first when the first axis could be 1, 3 or 4 channels (ambiguous shapes too), else last."""
    if image.shape[0] in (1, 3, 4):
        return "channels_first"
    if image.shape[-1] in (1, 3, 4):
        return "channels_last"
    raise InputError(f"cannot tell the channel axis of an image of shape {image.shape}: neither the first nor the last "
                     "axis has 1, 3 or 4 channels; pass input_data_format")


def to_rgb_pil(image):
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        white = pil().new("RGBA", rgba.size, (255, 255, 255, 255))
        return pil().alpha_composite(white, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")  # convert() would copy an RGB image


def to_rgb_array(image: np.ndarray) -> np.ndarray:
    """(C, H, W) with 1, 3 or 4 channels -> 3 channels (alpha composited onto white)."""
    if image.shape[0] == 1:
        return np.repeat(image, 3, axis=0)
    if image.shape[0] != 4:
        return image
    floating = np.issubdtype(image.dtype, np.floating)
    if floating and (image.min() < 0.0 or image.max() > 1.0):
        raise InputError(f"an RGBA float image must hold values in [0, 1], got [{image.min()}, {image.max()}]")
    white = 1.0 if floating else 255
    alpha = image[3:4] / white
    blended = alpha * image[:3] + (1 - alpha) * white
    return blended.astype(image.dtype) if floating else np.round(blended).astype(image.dtype)


def _needs_byte_scaling(image: np.ndarray) -> bool:
    """Whether a float image in [0, 1] must be scaled to [0, 255] to become an 8-bit PIL image."""
    if image.dtype == np.uint8:
        return False
    if np.allclose(image, image.astype(int)):
        if image.min() >= 0 and image.max() <= 255:
            return False
        raise InputError(f"an integer-valued image must hold values in [0, 255], got [{image.min()}, {image.max()}]")
    if image.min() >= 0 and image.max() <= 1:
        return True
    raise InputError(f"a float image must hold values in [0, 1] (or whole numbers in [0, 255]), "
                     f"got [{image.min()}, {image.max()}]")


def resize(image: np.ndarray, size: tuple[int, int], resample: int = 2) -> np.ndarray:
    """(C, H, W) -> (C, *size) through an 8-bit PIL image and Pillow's `resample` filter; float images in
    [0, 1] go through [0, 255] and come back as float32 in [0, 1]."""
    Image = pil()
    scale = _needs_byte_scaling(image)
    hwc = np.moveaxis(image, 0, -1)
    hwc = hwc[..., 0] if hwc.shape[-1] == 1 else hwc
    if scale:
        hwc = rescale(hwc, 255)
    resized = np.array(Image.fromarray(hwc.astype(np.uint8)).resize((size[1], size[0]), resample=resample))
    resized = resized[None] if resized.ndim == 2 else np.moveaxis(resized, -1, 0)
    return rescale(resized, 1 / 255) if scale else resized


def resize_pil(image, size: dict, resample: int, do_convert_rgb: bool) -> np.ndarray | None:
    """(C, H, W) uint8 of an 8-bit PIL image resized by Pillow directly: the same pixels as `resize` after
    `channels_first` (that path rebuilds this very PIL image), one copy fewer. None for other modes."""
    if not is_pil_image(image) or image.mode not in ("L", "RGB", "RGBA"):
        return None
    image = to_rgb_pil(image) if do_convert_rgb else image
    h, w = output_size((image.height, image.width), size)
    array = np.array(image.resize((w, h), resample=resample))
    return array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)


def output_size(hw: tuple[int, int], size: dict) -> tuple[int, int]:
    """(height, width) a `size` dict asks for an image of `hw` pixels: exact height/width, or the shorter
    edge (torchvision's rule: the long edge scales and is truncated), capped by `longest_edge` when given."""
    H, W = hw
    if "height" in size and "width" in size:
        return size["height"], size["width"]
    if "shortest_edge" in size:
        short, long = (W, H) if W <= H else (H, W)
        new_short = size["shortest_edge"]
        new_long = int(new_short * long / short)
        limit = size.get("longest_edge")
        if limit is not None and new_long > limit:
            new_short, new_long = int(limit * new_short / new_long), limit
        return (new_long, new_short) if W <= H else (new_short, new_long)
    raise InputError(f"size={size!r}: expected {{'height', 'width'}} or {{'shortest_edge'[, 'longest_edge']}}")


def center_crop(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(C, H, W) -> (C, *size) around the center; an image smaller than `size` is zero-padded around it."""
    H, W = image.shape[-2:]
    h, w = int(size[0]), int(size[1])
    top, left = (H - h) // 2, (W - w) // 2
    if top >= 0 and left >= 0:
        return image[..., top:top + h, left:left + w]
    padded = np.zeros_like(image, shape=image.shape[:-2] + (max(h, H), max(w, W)))
    pad_top, pad_left = ceil((padded.shape[-2] - H) / 2), ceil((padded.shape[-1] - W) / 2)
    padded[..., pad_top:pad_top + H, pad_left:pad_left + W] = image
    top, left = (padded.shape[-2] - h) // 2, (padded.shape[-1] - w) // 2
    return padded[..., top:top + h, left:left + w]


def byte_table(values, channels: int) -> np.ndarray:
    """(C, 256): what the elementwise `values` (rescale, normalize) makes of each 8-bit value in each channel."""
    return values(np.broadcast_to(np.arange(256, dtype=np.uint8), (channels, 1, 256)))[:, 0]


def look_up(table: np.ndarray, image: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out[c] = table[c][image[c]] for a (C, H, W) uint8 image: every per-pixel step in one pass, same numbers."""
    for c in range(len(table)):
        np.take(table[c], image[c], out=out[c], mode="clip")  # "raise" would buffer `out`; indices are < 256
    return out


def map_images(fn, items: list) -> list:
    """[fn(x) for x in items], on threads for a batch: Pillow's resize and numpy's take release the GIL."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = min(len(items), cpus)
    if workers < 2:
        return [fn(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:  # one per call: a pool kept across calls would hang after a fork
        return list(pool.map(fn, items))


def rescale(image: np.ndarray, scale: float) -> np.ndarray:
    """image * scale in float64, stored as float32 (Transformers' order of rounding)."""
    return (image.astype(np.float64) * scale).astype(np.float32)


def normalize(image: np.ndarray, mean, std) -> np.ndarray:
    """(C, H, W) -> (image - mean) / std per channel, in the image's float dtype (float32 for integers)."""
    dtype = image.dtype if np.issubdtype(image.dtype, np.floating) else np.float32
    C = image.shape[0]
    mean = np.array(mean if isinstance(mean, (list, tuple)) else [mean] * C, dtype=dtype)
    std = np.array(std if isinstance(std, (list, tuple)) else [std] * C, dtype=dtype)
    if len(mean) != C or len(std) != C:
        raise InputError(f"image_mean / image_std have {len(mean)} / {len(std)} values for an image with {C} channels")
    out = np.subtract(image, mean[:, None, None], dtype=dtype)  # one new array, divided in place
    out /= std[:, None, None]
    return out
