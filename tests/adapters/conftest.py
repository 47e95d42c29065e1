"""Every adapter test starts from the same global RNG state: PEFT and `init_lora_weights=False` draw from it."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
