"""token-classification (alias ner): a label per token, optionally merged into words and entities.

`aggregation_strategy`:
- "none": one entry per token {entity, score, index, word, start, end};
- "simple": adjacent tokens with the same tag (B-/I- prefixes) merged into {entity_group, score, word, start, end};
- "first" / "average" / "max": tokens first merged into words (the word's label from its first
  token, its mean scores, or its most confident token), then words grouped as in "simple".
`ignore_labels` (default ["O"]) drops those labels. `stride` splits long texts into overlapping
windows whose entities are merged (longer, then more confident, wins).
"""

from __future__ import annotations

import numpy as np
import torch

from .base import Pipeline, PipelineError, softmax

STRATEGIES = ("none", "simple", "first", "average", "max")


class TokenClassificationPipeline(Pipeline):
    task = "token-classification"
    chunked = True
    token_outputs = ("logits", "input_ids", "special_tokens_mask", "offset_mapping")

    def __call__(self, inputs=None, *args, **kwargs):
        if kwargs.get("is_split_into_words") and isinstance(inputs, list) and not all(isinstance(x, list) for x in inputs):
            inputs = [inputs]  # one pre-split sentence; Transformers returns it as a one-element batch
        return super().__call__(inputs, *args, **kwargs)

    def _sanitize_parameters(self, ignore_labels=None, aggregation_strategy=None, offset_mapping=None,
                             is_split_into_words: bool = False, stride: int | None = None, delimiter=None,
                             grouped_entities=None, ignore_subwords=None):
        if grouped_entities is not None or ignore_subwords is not None:  # Transformers' old spelling
            aggregation_strategy = aggregation_strategy or (
                ("first" if ignore_subwords else "simple") if grouped_entities else "none")
        pre = {"is_split_into_words": is_split_into_words}
        if is_split_into_words:
            pre["delimiter"] = " " if delimiter is None else delimiter
        if offset_mapping is not None:
            pre["offset_mapping"] = offset_mapping
        post = {}
        if aggregation_strategy is not None:
            strategy = str(getattr(aggregation_strategy, "value", aggregation_strategy)).lower()
            if strategy not in STRATEGIES:
                raise PipelineError(f"aggregation_strategy={aggregation_strategy!r}; expected one of {', '.join(STRATEGIES)}")
            if strategy in ("first", "average", "max") and not self.tokenizer.is_fast:
                raise PipelineError(f"aggregation_strategy={strategy!r} needs a fast tokenizer (word boundaries); "
                                    "use 'simple' or a fast tokenizer")
            post["aggregation_strategy"] = strategy
        if ignore_labels is not None:
            post["ignore_labels"] = list(ignore_labels)
        if stride is not None:
            if stride >= self.tokenizer.model_max_length:
                raise PipelineError(f"stride={stride} must be smaller than tokenizer.model_max_length "
                                    f"({self.tokenizer.model_max_length})")
            if post.get("aggregation_strategy") == "none":
                raise PipelineError("stride= merges entities across windows: pick aggregation_strategy "
                                    "'simple', 'first', 'average' or 'max', not 'none'")
            if not self.tokenizer.is_fast:
                raise PipelineError("stride= needs a fast tokenizer")
            pre["stride"] = stride
        return pre, {}, post

    def preprocess(self, sentence, is_split_into_words=False, delimiter=" ", offset_mapping=None, stride=None):
        options = {}
        word_spans = None
        if is_split_into_words:
            if not isinstance(sentence, list) or not all(isinstance(w, str) for w in sentence):
                raise PipelineError("with is_split_into_words=True the input is a list of words")
            words, sentence = sentence, delimiter.join(sentence)
            word_spans, position = [], 0
            for word in words:  # where each word sits in the joined sentence
                word_spans.append((position, position + len(word)))
                position += len(word) + len(delimiter)
            text, options["is_split_into_words"] = words, True
        else:
            text = self.check_text(sentence)
        if stride is not None:
            options.update(return_overflowing_tokens=True, padding=True, stride=stride)
        max_len = self.tokenizer.model_max_length
        enc = self.tokenizer(text, return_tensors="pt", truncation=bool(max_len and max_len > 0),
                             return_special_tokens_mask=True, return_offsets_mapping=self.tokenizer.is_fast, **options)
        enc.pop("overflow_to_sample_mapping", None)
        windows = []
        for i in range(len(enc["input_ids"])):
            window = {k: v[i:i + 1] for k, v in enc.items()}
            if offset_mapping is not None:
                window["offset_mapping"] = torch.tensor([offset_mapping])
            window["sentence"] = sentence
            window["word_ids"] = enc.word_ids(i) if word_spans is not None else None
            window["word_spans"] = word_spans
            windows.append(window)
        return windows

    def _forward(self, model_inputs: dict) -> dict:
        names = ("input_ids", "attention_mask", "token_type_ids")
        logits = self.model(**{k: model_inputs[k] for k in names if k in model_inputs}).logits
        return {"logits": logits, **model_inputs}

    def postprocess(self, windows: list[dict], aggregation_strategy: str = "none", ignore_labels=None) -> list[dict]:
        ignore = ["O"] if ignore_labels is None else ignore_labels
        entities = []
        for out in windows:
            scores = softmax(out["logits"][0].float().cpu().numpy())
            offsets = out.get("offset_mapping")
            tokens = self.pre_entities(out["sentence"], out["input_ids"][0].tolist(), scores,
                                       None if offsets is None else offsets[0].tolist(),
                                       out["special_tokens_mask"][0].tolist(), aggregation_strategy,
                                       out.get("word_ids"), out.get("word_spans"))
            for entity in self.aggregate(tokens, aggregation_strategy):
                if entity.get("entity") not in ignore and entity.get("entity_group") not in ignore:
                    entities.append(entity)
        return merge_overlapping(entities) if len(windows) > 1 else entities

    def pre_entities(self, sentence, ids, scores, offsets, special, strategy, word_ids=None, word_spans=None):
        """Per non-special token: its text, scores, char span and whether it continues a word."""
        # a fast tokenizer whose model marks word continuations ("##" in WordPiece) tells subwords apart exactly
        backend = self.tokenizer.backend_tokenizer if self.tokenizer.is_fast else None
        has_subword_prefix = backend is not None and getattr(backend.model, "continuing_subword_prefix", None)
        out = []
        for i, token_scores in enumerate(scores):
            if special[i]:
                continue
            word = self.tokenizer.convert_ids_to_tokens(ids[i])
            start = end = None
            is_subword = False
            if offsets is not None:
                start, end = offsets[i]
                if word_ids is not None and word_spans is not None and word_ids[i] is not None:
                    shift = word_spans[word_ids[i]][0]  # offsets are relative to the word
                    start, end = start + shift, end + shift
                reference = sentence[start:end]
                if has_subword_prefix:
                    is_subword = len(word) != len(reference)
                else:  # no "##"-style prefix: a token glued to the previous character continues a word
                    is_subword = start > 0 and " " not in sentence[start - 1:start + 1]
                if ids[i] == self.tokenizer.unk_token_id:
                    word, is_subword = reference, False
            out.append({"word": word, "scores": token_scores, "start": start, "end": end, "index": i,
                        "is_subword": is_subword})
        return out

    def aggregate(self, tokens: list[dict], strategy: str) -> list[dict]:
        id2label = self.model.config.id2label
        if strategy in ("none", "simple"):
            entities = []
            for t in tokens:
                best = int(t["scores"].argmax())
                entities.append({"entity": id2label[best], "score": float(t["scores"][best]), "index": t["index"],
                                 "word": t["word"], "start": t["start"], "end": t["end"]})
            return entities if strategy == "none" else self.group_entities(entities)
        words, group = [], []
        for t in tokens:
            if group and not t["is_subword"]:
                words.append(self.aggregate_word(group, strategy))
                group = []
            group.append(t)
        if group:
            words.append(self.aggregate_word(group, strategy))
        return self.group_entities(words)

    def aggregate_word(self, tokens: list[dict], strategy: str) -> dict:
        if strategy == "first":
            scores = tokens[0]["scores"]
        elif strategy == "max":
            scores = max(tokens, key=lambda t: t["scores"].max())["scores"]
        else:
            scores = np.nanmean(np.stack([t["scores"] for t in tokens]), axis=0)
        best = int(scores.argmax())
        return {"entity": self.model.config.id2label[best], "score": float(scores[best]),
                "word": self.tokenizer.convert_tokens_to_string([t["word"] for t in tokens]),
                "start": tokens[0]["start"], "end": tokens[-1]["end"]}

    def group_entities(self, entities: list[dict]) -> list[dict]:
        """Merge runs of entities with the same tag; a B- tag starts a new run."""
        groups, run = [], []
        for entity in entities:
            if run:
                bi, tag = split_tag(entity["entity"])
                if tag == split_tag(run[-1]["entity"])[1] and bi != "B":
                    run.append(entity)
                    continue
                groups.append(self.group(run))
            run = [entity]
        if run:
            groups.append(self.group(run))
        return groups

    def group(self, run: list[dict]) -> dict:
        return {"entity_group": run[0]["entity"].split("-", 1)[-1],
                "score": float(np.nanmean([e["score"] for e in run])),
                "word": self.tokenizer.convert_tokens_to_string([e["word"] for e in run]),
                "start": run[0]["start"], "end": run[-1]["end"]}


def split_tag(label: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); a label without a B-/I- prefix counts as inside ('I', label)."""
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


def merge_overlapping(entities: list[dict]) -> list[dict]:
    """Entities from overlapping windows: of two that overlap, keep the longer, then the more confident."""
    if not entities:
        return entities
    entities = sorted(entities, key=lambda e: e["start"])
    merged, previous = [], entities[0]
    for entity in entities:
        if previous["start"] <= entity["start"] < previous["end"]:
            length, previous_length = entity["end"] - entity["start"], previous["end"] - previous["start"]
            if length > previous_length or (length == previous_length and entity["score"] > previous["score"]):
                previous = entity
        else:
            merged.append(previous)
            previous = entity
    merged.append(previous)
    return merged


NerPipeline = TokenClassificationPipeline
