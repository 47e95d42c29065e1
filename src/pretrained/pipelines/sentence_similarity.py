"""sentence-similarity: rank candidate sentences by cosine similarity to a query.

`pipe("Where is the cat?", sentences=[...])` or `pipe({"source_sentence": ..., "sentences": [...]})`
-> [{"sentence", "score", "corpus_id"}] best first. Embeddings are pooled and normalized as the
checkpoint's sentence-transformers files say (mean pooling when they are absent), and inputs are
cut at its max_seq_length, as sentence-transformers does.
"""

from __future__ import annotations

import torch

from ..defaults import sentence_settings
from .base import PipelineError
from .feature_extraction import FeatureExtractionPipeline, pool


class SentenceSimilarityPipeline(FeatureExtractionPipeline):
    task = "sentence-similarity"
    chunked = True

    def _sanitize_parameters(self, sentences=None, candidates=None, top_k=None, **kwargs):
        if kwargs:
            raise PipelineError(f"{self.task} got unknown options {sorted(kwargs)}; it takes sentences and top_k")
        if sentences is not None and candidates is not None:
            raise PipelineError("pass the candidates as sentences= or candidates=, not both")
        pre = {}
        if sentences is not None or candidates is not None:
            pre["sentences"] = sentences if sentences is not None else candidates
        post = {}
        if top_k is not None:
            if not isinstance(top_k, int) or top_k < 1:
                raise PipelineError(f"top_k={top_k!r}; expected a positive int")
            post["top_k"] = top_k
        return pre, {}, post

    @property
    def settings(self) -> dict:
        if not hasattr(self, "_settings"):
            self._settings = sentence_settings(self.model_path)
        return self._settings

    def preprocess(self, inputs, sentences=None) -> list[dict]:
        if isinstance(inputs, dict):
            if sentences is not None or set(inputs) != {"source_sentence", "sentences"}:
                raise PipelineError("a sentence-similarity input dict has exactly the keys "
                                    "'source_sentence' and 'sentences'")
            inputs, sentences = inputs["source_sentence"], inputs["sentences"]
        self.check_text(inputs, "query")
        if isinstance(sentences, str):
            sentences = [sentences]
        if not sentences or not all(isinstance(s, str) for s in sentences):
            raise PipelineError(f"{self.task} needs a non-empty list of candidate strings: "
                                "pipe(query, sentences=[...]) or pipe({'source_sentence': q, 'sentences': [...]})")
        limit = self.settings["max_seq_length"] or getattr(self.tokenizer, "model_max_length", None)
        texts = [inputs, *sentences]
        return [dict(self.tokenizer(t, return_tensors="pt", truncation=True, max_length=limit), text=t)
                for t in texts]

    def postprocess(self, model_outputs: list[dict], top_k: int | None = None) -> list[dict]:
        vectors = torch.cat([pool(o["last_hidden_state"].float().cpu(), o["attention_mask"].cpu(),
                                  self.settings["pooling"]) for o in model_outputs])
        vectors = torch.nn.functional.normalize(vectors, dim=-1)  # cosine = dot of unit vectors
        scores = (vectors[1:] @ vectors[0]).tolist()
        ranked = sorted(range(len(scores)), key=lambda i: -scores[i])[:top_k]
        return [{"sentence": model_outputs[i + 1]["text"], "score": scores[i], "corpus_id": i} for i in ranked]

    def _forward(self, model_inputs: dict) -> dict:
        out = super()._forward(model_inputs)
        out["text"] = model_inputs["text"]
        return out
