"""/v1/embeddings: sentence embeddings as sentence-transformers computes them.

The folder's sentence-transformers files choose the pooling, the normalization and the maximum
length (all-MiniLM-L6-v2: mean pooling, L2-normalized, 256 tokens); longer inputs are cut there, as
sentence-transformers does. Calls are serialized: the model runs in a worker thread, one batch at a time.
"""

from __future__ import annotations

import base64
import threading

import torch

from ..defaults import sentence_settings
from ..pipelines.feature_extraction import pool


class EmbeddingModel:
    def __init__(self, path: str):
        from ..auto import AutoModel
        from ..tokenization.auto import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        settings = sentence_settings(path)
        self.pooling, self.normalize = settings["pooling"], settings["normalize"]
        limits = [n for n in (settings["max_seq_length"], getattr(self.model.config, "max_position_embeddings", None),
                              self.tokenizer.model_max_length) if n]
        self.max_length = min(limits)
        self._lock = threading.Lock()

    def embed(self, inputs: list) -> tuple[torch.Tensor, int]:
        """(N, H) float32 embeddings of texts or token id lists, and the number of tokens read."""
        rows = [self.tokenizer.encode(x, truncation=True, max_length=self.max_length) if isinstance(x, str)
                else list(x)[: self.max_length] for x in inputs]
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])  # (N, T) right-padded
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        with self._lock, torch.inference_mode():
            hidden = self.model(input_ids=ids, attention_mask=mask)[0].float()
        vectors = pool(hidden, mask, self.pooling)
        if self.normalize:
            vectors = torch.nn.functional.normalize(vectors, dim=-1)
        return vectors, int(mask.sum())

    @staticmethod
    def encode(vector: torch.Tensor, encoding_format: str):
        """OpenAI's two wire formats: a list of floats, or base64 of little-endian float32 bytes."""
        if encoding_format == "base64":
            return base64.b64encode(vector.numpy().astype("<f4").tobytes()).decode()
        return vector.tolist()
