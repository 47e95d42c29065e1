"""question-answering: the span of a context that answers a question (extractive QA).

Long contexts are cut into windows of `max_seq_len` tokens overlapping by `doc_stride`; each
window is one model call (a chunked pipeline) and the best spans of all windows compete. A span's
score is p(start) * p(end) over the context tokens, spans longer than `max_answer_len` tokens are
excluded, equal answers found in several windows add their scores, and `handle_impossible_answer`
adds the empty answer scored by the [CLS] position. Output: {"score", "start", "end", "answer"}
(a list of them when `top_k` > 1).
"""

from __future__ import annotations

import numpy as np

from .base import Pipeline, PipelineError, softmax


def best_spans(start: np.ndarray, end: np.ndarray, top_k: int, max_answer_len: int, allowed: np.ndarray):
    """(starts, ends, scores) of the top_k spans by p(start) * p(end), start <= end < start + max_answer_len,
    both ends on allowed tokens. start/end: (1, T) probabilities; allowed: (1, T) 0/1."""
    outer = start[0][:, None] * end[0][None, :]  # (T, T): [s, e] = p(s) p(e)
    candidates = np.tril(np.triu(outer), max_answer_len - 1)
    flat = candidates.flatten()
    if top_k == 1:
        order = np.array([np.argmax(flat)])
    elif len(flat) < top_k:
        order = np.argsort(-flat)
    else:
        order = np.argpartition(-flat, top_k)[:top_k]
        order = order[np.argsort(-flat[order])]
    starts, ends = np.unravel_index(order, candidates.shape)
    ok_positions = allowed[0].nonzero()[0]
    keep = np.isin(starts, ok_positions) & np.isin(ends, ok_positions)
    starts, ends = starts[keep], ends[keep]
    return starts, ends, candidates[starts, ends]


class QuestionAnsweringPipeline(Pipeline):
    task = "question-answering"
    chunked = True
    token_outputs = ("start", "end", "p_mask", "attention_mask", "input_ids")

    def __call__(self, *args, **kwargs):
        examples = self.examples(*args, kwargs=kwargs)
        if isinstance(examples, list) and len(examples) == 1:
            examples = examples[0]
        return super().__call__(examples, **kwargs)

    @staticmethod
    def examples(*args, kwargs: dict):
        """Transformers' input forms -> one {"question", "context"} dict or a list of them."""
        if args and ("question" in kwargs or "context" in kwargs):
            raise PipelineError("pass the question and context either positionally (a dict) or as keywords, not both")
        if len(args) > 1:
            if len(args) == 2 and all(isinstance(a, str) for a in args):
                return [{"question": args[0], "context": args[1]}]
            raise PipelineError("question-answering takes one dict (or a list of them) or question=, context=")
        if args:
            items = args[0]
        elif "question" in kwargs or "context" in kwargs:
            question, context = kwargs.pop("question", None), kwargs.pop("context", None)
            if isinstance(question, list) and isinstance(context, str):
                context = [context] * len(question)
            if isinstance(question, list) or isinstance(context, list):
                if not (isinstance(question, list) and isinstance(context, list) and len(question) == len(context)):
                    raise PipelineError("question= and context= lists must have the same length")
                items = [{"question": q, "context": c} for q, c in zip(question, context)]
            else:
                items = {"question": question, "context": context}
        else:
            items = kwargs.pop("X", kwargs.pop("data", None))
        if isinstance(items, (list, tuple)):
            return [QuestionAnsweringPipeline.check_example(x) for x in items]
        if isinstance(items, dict):
            return QuestionAnsweringPipeline.check_example(items)
        if items is None:
            raise PipelineError("question-answering needs question= and context= (or a {'question', 'context'} dict)")
        return items  # a generator or dataset: checked item by item

    @staticmethod
    def check_example(example) -> dict:
        if not isinstance(example, dict) or set(example) != {"question", "context"}:
            raise PipelineError(f"a question-answering input is a dict with the keys 'question' and 'context', got {example!r}")
        for key in ("question", "context"):
            if not isinstance(example[key], str):
                raise PipelineError(f"`{key}` must be a string, got {type(example[key]).__name__}")
            if not example[key].strip():
                raise PipelineError(f"`{key}` cannot be empty")
        return example

    def _sanitize_parameters(self, padding=None, topk=None, top_k=None, doc_stride=None, max_answer_len=None,
                             max_seq_len=None, max_question_len=None, handle_impossible_answer=None,
                             align_to_words=None):
        pre = {k: v for k, v in (("padding", padding), ("doc_stride", doc_stride), ("max_seq_len", max_seq_len),
                                 ("max_question_len", max_question_len)) if v is not None}
        post = {}
        top_k = top_k if top_k is not None else topk
        if top_k is not None:
            if not isinstance(top_k, int) or top_k < 1:
                raise PipelineError(f"top_k={top_k!r}; expected an int >= 1")
            post["top_k"] = top_k
        if max_answer_len is not None:
            if not isinstance(max_answer_len, int) or max_answer_len < 1:
                raise PipelineError(f"max_answer_len={max_answer_len!r}; expected an int >= 1")
            post["max_answer_len"] = max_answer_len
        if handle_impossible_answer is not None:
            post["handle_impossible_answer"] = handle_impossible_answer
        if align_to_words is not None:
            post["align_to_words"] = align_to_words
        return pre, {}, post

    def preprocess(self, example, padding=False, doc_stride=None, max_question_len=64, max_seq_len=None) -> list[dict]:
        example = self.check_example(example)
        if max_seq_len is None:
            max_seq_len = min(self.tokenizer.model_max_length, 384)
        if doc_stride is None:
            doc_stride = min(max_seq_len // 2, 128)
        if doc_stride > max_seq_len:
            raise PipelineError(f"doc_stride ({doc_stride}) is larger than max_seq_len ({max_seq_len})")
        question_first = self.tokenizer.padding_side == "right"
        question, context = example["question"], example["context"]
        enc = self.tokenizer(
            text=question if question_first else context, text_pair=context if question_first else question,
            padding=padding, truncation="only_second" if question_first else "only_first", max_length=max_seq_len,
            stride=doc_stride, return_token_type_ids=True, return_overflowing_tokens=True,
            return_offsets_mapping=True, return_special_tokens_mask=True,
        )
        windows = []
        context_index = 1 if question_first else 0
        names = [n for n in self.tokenizer.model_input_names if n in enc]
        for i in range(len(enc["input_ids"])):
            # p_mask: 1 where the answer cannot be (question, special tokens), except [CLS] (the empty answer)
            p_mask = [int(s != context_index) if question_first else 0 for s in enc.sequence_ids(i)]
            if self.tokenizer.cls_token_id is not None:
                for j, token in enumerate(enc["input_ids"][i]):
                    if token == self.tokenizer.cls_token_id:
                        p_mask[j] = 0
            window = {name: _row(enc[name][i]) for name in names}
            window["p_mask"] = _row(p_mask)
            window["encoding"] = enc.encodings[i]
            window["context"] = context
            windows.append(window)
        return windows

    def _forward(self, model_inputs: dict) -> dict:
        inputs = {k: model_inputs[k] for k in self.tokenizer.model_input_names if k in model_inputs}
        output = self.model(**inputs)
        return {"start": output.start_logits, "end": output.end_logits, **model_inputs}

    def postprocess(self, windows: list[dict], top_k: int = 1, handle_impossible_answer: bool = False,
                    max_answer_len: int = 15, align_to_words: bool = True):
        min_null_score = 1_000_000.0
        answers = []
        question_first = self.tokenizer.padding_side == "right"
        for out in windows:
            start = out["start"].float().cpu().numpy()
            end = out["end"].float().cpu().numpy()
            allowed = 1 - out["p_mask"].cpu().numpy()
            if out.get("attention_mask") is not None:
                allowed = allowed & out["attention_mask"].cpu().numpy()
            start = np.where(allowed == 0, -10000.0, start)
            end = np.where(allowed == 0, -10000.0, end)
            start, end = softmax(start), softmax(end)
            if handle_impossible_answer:
                min_null_score = min(min_null_score, float(start[0, 0] * end[0, 0]))
            start[0, 0] = end[0, 0] = 0.0
            # candidates may collapse when aligned to words: look further than top_k
            n = top_k * 2 + 10 if align_to_words else top_k
            enc, context = out["encoding"], out["context"]
            shift = 0
            if self.tokenizer.padding_side == "left":
                shift = int((out["input_ids"] == self.tokenizer.pad_token_id).sum())
            for s, e, score in zip(*best_spans(start, end, n, max_answer_len, allowed)):
                first, last = char_span(enc, int(s) - shift, int(e) - shift, 1 if question_first else 0, align_to_words)
                text = context[first:last]
                same = next((a for a in answers if a["answer"].lower() == text.lower()), None)
                if same is not None:
                    same["score"] += float(score)
                else:
                    answers.append({"score": float(score), "start": first, "end": last, "answer": text})
        if handle_impossible_answer:
            answers.append({"score": min_null_score, "start": 0, "end": 0, "answer": ""})
        answers = sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]
        return answers[0] if len(answers) == 1 else answers


def _row(values):
    import torch

    return torch.tensor([values], dtype=torch.long)


def char_span(enc, s: int, e: int, sequence_index: int, align_to_words: bool) -> tuple[int, int]:
    """Character span of tokens s..e in the context; widened to whole words with align_to_words."""
    if align_to_words:
        start_word, end_word = enc.word_ids[s], enc.word_ids[e]
        if start_word is not None and end_word is not None:
            first = word_chars(enc, start_word, sequence_index)
            last = word_chars(enc, end_word, sequence_index)
            if first is not None and last is not None:
                return first[0], last[1]
    return enc.offsets[s][0], enc.offsets[e][1]


def word_chars(enc, word: int, sequence_index: int) -> tuple[int, int] | None:
    spans = [o for o, w, q in zip(enc.offsets, enc.word_ids, enc.sequence_ids) if w == word and q == sequence_index]
    return (spans[0][0], spans[-1][1]) if spans else None
