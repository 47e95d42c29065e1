"""zero-shot-classification: rank any labels with an NLI model.

Each label becomes a hypothesis (`hypothesis_template`, default "This example is {}.") paired with
the text; the entailment logits across labels are softmaxed (or, with `multi_label=True` or a
single label, entailment vs contradiction per label). Output: {"sequence", "labels", "scores"},
best first.
"""

from __future__ import annotations

import numpy as np

from .base import Pipeline, PipelineError, softmax


def parse_labels(labels) -> list[str]:
    if isinstance(labels, str):
        labels = [label.strip() for label in labels.split(",") if label.strip()]
    return list(labels or [])


class ZeroShotClassificationPipeline(Pipeline):
    task = "zero-shot-classification"
    chunked = True

    def __call__(self, sequences=None, *args, **kwargs):
        if len(args) == 1 and "candidate_labels" not in kwargs:
            kwargs["candidate_labels"] = args[0]
        elif args:
            raise PipelineError(f"zero-shot-classification takes (sequences, candidate_labels); got extra {args}")
        return super().__call__(sequences, **kwargs)

    def _sanitize_parameters(self, candidate_labels=None, hypothesis_template=None, multi_label=None):
        pre = {}
        if candidate_labels is not None:
            pre["candidate_labels"] = parse_labels(candidate_labels)
        if hypothesis_template is not None:
            pre["hypothesis_template"] = hypothesis_template
        post = {"multi_label": multi_label} if multi_label is not None else {}
        return pre, {}, post

    @property
    def pad_token_id(self) -> int | None:
        """A tokenizer without a pad token pads batches with eos (masked out); the tokenizer itself is left as it is."""
        pad = super().pad_token_id
        return pad if pad is not None else getattr(self.tokenizer, "eos_token_id", None)

    @property
    def entailment_id(self) -> int:
        for label, index in self.model.config.label2id.items():
            if label.lower().startswith("entail"):
                return index
        return -1

    def preprocess(self, inputs, candidate_labels=None, hypothesis_template="This example is {}.") -> list[dict]:
        self.check_text(inputs, "sequence")
        if not inputs or not candidate_labels:
            raise PipelineError("zero-shot-classification needs a non-empty sequence and at least one candidate label")
        if hypothesis_template.format(candidate_labels[0]) == hypothesis_template:
            raise PipelineError(f"hypothesis_template={hypothesis_template!r} has no '{{}}' where the label goes")
        pairs = []
        for label in candidate_labels:  # one pair per row: batches are padded by the base, not here
            pair = [[inputs, hypothesis_template.format(label)]]
            try:
                enc = self.tokenizer(pair, return_tensors="pt", truncation="only_first")
            except Exception as e:  # the hypothesis alone is longer than the model's limit
                if "too short" not in str(e):
                    raise
                enc = self.tokenizer(pair, return_tensors="pt", truncation=False)
            pairs.append({"candidate_label": label, "sequence": inputs, **enc})
        return pairs

    def _forward(self, model_inputs: dict) -> dict:
        inputs = {k: v for k, v in model_inputs.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        return {"logits": self.model(**inputs).logits, "candidate_label": model_inputs["candidate_label"],
                "sequence": model_inputs["sequence"]}

    def postprocess(self, model_outputs: list[dict], multi_label: bool = False) -> dict:
        labels = [o["candidate_label"] for o in model_outputs]
        logits = np.concatenate([o["logits"].float().cpu().numpy() for o in model_outputs])  # (labels, classes)
        entail = self.entailment_id
        if multi_label or len(labels) == 1:
            contradiction = -1 if entail == 0 else 0
            scores = softmax(logits[:, [contradiction, entail]])[:, 1]
        else:
            scores = softmax(logits[:, entail])
        order = list(reversed(scores.argsort()))
        return {"sequence": model_outputs[0]["sequence"], "labels": [labels[i] for i in order],
                "scores": [float(scores[i]) for i in order]}
