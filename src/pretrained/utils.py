"""What scripts import from `transformers.utils` and `transformers.trainer_utils`: package probes
(`is_*_available`), seeding (`set_seed`, `enable_full_determinism`), `logging` and `get_json_schema`.

A probe answers "can this library's code path use it": installed packages are found without
importing them; features we do not implement (flash-attention 2) answer False.
"""

from __future__ import annotations

import importlib.util
import os
import random
from functools import lru_cache

from . import logging  # noqa: F401  (`from pretrained.utils import logging`, as from transformers.utils)
from .tokenization.tools import get_json_schema  # noqa: F401  (as transformers.utils.get_json_schema)


@lru_cache(maxsize=None)
def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def is_torch_available() -> bool:
    return _installed("torch")


def is_tokenizers_available() -> bool:
    return _installed("tokenizers")


def is_sentencepiece_available() -> bool:
    return _installed("sentencepiece")


def is_safetensors_available() -> bool:
    return _installed("safetensors")


def is_protobuf_available() -> bool:
    return _installed("google.protobuf") if _installed("google") else False


def is_datasets_available() -> bool:
    return _installed("datasets")


def is_accelerate_available() -> bool:
    return _installed("accelerate")


def is_peft_available() -> bool:
    return _installed("peft")


def is_vision_available() -> bool:
    return _installed("PIL")


def is_torchvision_available() -> bool:
    return _installed("torchvision")


def is_scipy_available() -> bool:
    return _installed("scipy")


def is_sklearn_available() -> bool:
    return _installed("sklearn")


def is_tf_available() -> bool:
    return _installed("tensorflow")


def is_flax_available() -> bool:
    return _installed("jax") and _installed("flax")


def is_bitsandbytes_available() -> bool:
    """False: we do not run bitsandbytes kernels (see BitsAndBytesConfig), whether or not it is installed."""
    return False


def is_flash_attn_2_available() -> bool:
    """False: attn_implementation="flash_attention_2" is not one of our backends; "sdpa" is the fast one."""
    return False


def is_torch_cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def is_torch_mps_available() -> bool:
    import torch

    return torch.backends.mps.is_available()


def is_torch_bf16_gpu_available() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


# ---------------------------------------------------------------------- seeding
def set_seed(seed: int, deterministic: bool = False) -> None:
    """Seed python's random, numpy and torch (every device); `deterministic` also asks torch for
    deterministic algorithms."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # every CUDA device too
    if deterministic:
        torch.use_deterministic_algorithms(True)


def enable_full_determinism(seed: int, warn_only: bool = False) -> None:
    """set_seed, then deterministic kernels everywhere (cuDNN, cuBLAS), as Transformers' full_determinism;
    `warn_only`: a kernel with no deterministic version warns instead of raising."""
    import torch

    set_seed(seed)
    # cuBLAS reads these when CUDA starts; they make its reductions reproducible.
    os.environ["CUDA_LAUNCH_BLOCKING"] = "1"
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":16:8"
    torch.use_deterministic_algorithms(True, warn_only=warn_only)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
