"""`response_format: {"type": "json_object"}`: constrained decoding so the output is one JSON object.

A small automaton reads JSON one character at a time and says whether the text so far can still grow
into a valid object (`step`). Before each token is sampled, every token whose text would make the
prefix invalid is masked out. A token's text is computed once per tokenizer (`JSONVocabulary`); the
mask is computed once per automaton state and cached, and inside a string (most of a long answer) the
tokens without quotes, backslashes or control characters are known valid without reading them. The
request finishes with "stop" the moment the top-level object closes.

A state is (open containers, lexical state, whitespace run): the containers as a string of "{" and
"[", the lexical state one of the short codes below. Whitespace between tokens is limited to
MAX_WHITESPACE characters in a row, so a model cannot stall in blank space forever.
"""

from __future__ import annotations

import torch

MAX_WHITESPACE = 24
WHITESPACE = " \t\n\r"
DIGITS = "0123456789"
HEX = "0123456789abcdefABCDEF"
# lexical states outside strings, numbers and literals
START, KEY_OR_END, KEY, COLON, VALUE, VALUE_OR_END, AFTER_VALUE, DONE = "S", "K", "K1", "C", "V", "V1", "A", "E"
STRUCTURAL = {START, KEY_OR_END, KEY, COLON, VALUE, VALUE_OR_END, AFTER_VALUE, DONE}
NUMBER_ENDS = {"n0", "nd", "nf", "nx"}  # number states where the number may stop

State = tuple[str, str, int]  # (open containers, lexical state, whitespace run)
INITIAL: State = ("", START, 0)


def step(state: State, c: str) -> State | None:
    """The state after character `c`, or None when no valid JSON object starts with the text so far."""
    stack, lex, ws = state
    if lex[0] == "n":  # inside a number
        after = _number(lex, c)
        if after is not None:
            return stack, after, 0
        if lex not in NUMBER_ENDS:
            return None
        lex = AFTER_VALUE  # the number ended: `c` is read after it
    elif lex[0] == "l":  # inside true / false / null: the letters still to come
        if c != lex[1]:
            return None
        return (stack, "l" + lex[2:], 0) if len(lex) > 2 else (stack, AFTER_VALUE, 0)
    elif lex[0] == "s":  # inside a string: s + k (key) or v (value) + escape state
        return _string(stack, lex, c)
    if c in WHITESPACE:
        return (stack, lex, ws + 1) if ws < MAX_WHITESPACE else None
    if lex == START:
        return ("{", KEY_OR_END, 0) if c == "{" else None
    if lex in (KEY_OR_END, KEY):
        if c == '"':
            return stack, "sk", 0
        return _close(stack, "{") if c == "}" and lex == KEY_OR_END else None
    if lex == COLON:
        return (stack, VALUE, 0) if c == ":" else None
    if lex in (VALUE, VALUE_OR_END):
        if c == "]" and lex == VALUE_OR_END:
            return _close(stack, "[")
        return _value(stack, c)
    if lex == AFTER_VALUE:
        if c == ",":
            return (stack, KEY if stack[-1] == "{" else VALUE, 0)
        return _close(stack, {"}": "{", "]": "["}.get(c))
    return None  # DONE: nothing but whitespace


def _close(stack: str, opener: str | None) -> State | None:
    if opener is None or not stack or stack[-1] != opener:
        return None
    rest = stack[:-1]
    return (rest, AFTER_VALUE if rest else DONE, 0)


def _value(stack: str, c: str) -> State | None:
    if c == '"':
        return stack, "sv", 0
    if c == "{":
        return stack + "{", KEY_OR_END, 0
    if c == "[":
        return stack + "[", VALUE_OR_END, 0
    if c == "-":
        return stack, "n-", 0
    if c in DIGITS:
        return stack, "n0" if c == "0" else "nd", 0
    literal = {"t": "lrue", "f": "lalse", "n": "lull"}.get(c)
    return (stack, literal, 0) if literal else None


def _number(lex: str, c: str) -> str | None:
    """The next number state: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?"""
    digit = c in DIGITS
    if lex == "n-":
        return ("n0" if c == "0" else "nd") if digit else None
    if lex in ("n0", "nd", "nf"):
        if digit and lex != "n0":
            return lex
        if c == "." and lex != "nf":
            return "n."
        return "ne" if c in "eE" else None
    if lex == "n.":
        return "nf" if digit else None
    if lex == "ne":
        return "ne+" if c in "+-" else "nx" if digit else None
    return "nx" if digit else None  # ne+ and nx


def _string(stack: str, lex: str, c: str) -> State | None:
    kind, escape = lex[1], lex[2:]
    if escape == "e":
        if c == "u":
            return stack, f"s{kind}u4", 0
        return (stack, f"s{kind}", 0) if c in '"\\/bfnrt' else None
    if escape:  # u4 .. u1: hex digits still to come
        if c not in HEX:
            return None
        left = int(escape[1]) - 1
        return stack, f"s{kind}u{left}" if left else f"s{kind}", 0
    if c == '"':
        return stack, COLON if kind == "k" else AFTER_VALUE, 0
    if c == "\\":
        return stack, f"s{kind}e", 0
    return None if ord(c) < 0x20 else (stack, lex, 0)


def walk(state: State | None, text: str) -> State | None:
    for c in text:
        if state is None:
            return None
        state = step(state, c)
    return state


class JSONVocabulary:
    """Every token's text (once per tokenizer) and the mask of allowed tokens per automaton state."""

    def __init__(self, tokenizer, vocab_size: int | None = None):
        size = max(vocab_size or 0, len(tokenizer))
        self.pieces = _pieces(tokenizer, size)
        usable = [bool(p) and "\ufffd" not in p for p in self.pieces]  # no empty or half-character tokens
        self.usable = [i for i, ok in enumerate(usable) if ok]
        # tokens that stay inside a string unread: no quote, backslash or control character
        plain = [ok and '"' not in p and "\\" not in p and all(ord(c) >= 0x20 for c in p)
                 for ok, p in zip(usable, self.pieces)]
        self.plain = torch.tensor(plain, dtype=torch.bool)
        self.trie = _trie({i: self.pieces[i] for i in self.usable})
        self.string_trie = _trie({i: self.pieces[i] for i in self.usable if not plain[i]})
        self._masks: dict[State, torch.Tensor] = {}

    def allowed(self, state: State) -> torch.Tensor:
        """(V,) bool: the tokens whose text keeps `state`'s prefix valid."""
        mask = self._masks.get(state)
        if mask is not None:
            return mask
        ok: list[int] = []
        if state[1][0] == "s" and len(state[1]) == 2:  # plain string content: only special tokens are read
            mask = self.plain.clone()
            _collect(self.string_trie, state, ok)
        else:
            mask = torch.zeros_like(self.plain)
            _collect(self.trie, state, ok)
        if ok:
            mask[torch.tensor(ok)] = True
        self._masks[state] = mask
        return mask


def _trie(pieces: dict[int, str]) -> dict:
    """Nested dicts by character; the key None holds the ids of the tokens that end at a node."""
    root: dict = {}
    for i, piece in pieces.items():
        node = root
        for c in piece:
            node = node.setdefault(c, {})
        node.setdefault(None, []).append(i)
    return root


def _collect(node: dict, state: State, out: list[int]) -> None:
    """The ids under `node` whose text is valid from `state`: a refused prefix prunes its whole subtree,
    so a structural state reads a few hundred characters, not the vocabulary."""
    for c, child in node.items():
        if c is None:
            out.extend(child)
            continue
        after = step(state, c)
        if after is not None:
            _collect(child, after, out)


class JSONConstraint:
    """One request's position in the automaton."""

    def __init__(self, vocabulary: JSONVocabulary):
        self.vocabulary, self.state = vocabulary, INITIAL

    def allowed(self) -> torch.Tensor:
        return self.vocabulary.allowed(self.state)

    def advance(self, token_id: int) -> None:
        self.state = walk(self.state, self.vocabulary.pieces[token_id])

    @property
    def complete(self) -> bool:
        return self.state is not None and self.state[1] == DONE


def _pieces(tokenizer, size: int) -> list[str]:
    """Each token's text as it reads after other text: decode([x, id]) minus decode([x]), so tokenizers
    that drop a leading space at the start of a text (SentencePiece) still give the space."""
    anchor = tokenizer.encode("a", add_special_tokens=False)[-1]
    head = tokenizer.decode([anchor], skip_special_tokens=True)
    known = len(tokenizer)
    texts = tokenizer.batch_decode([[anchor, i] for i in range(known)], skip_special_tokens=True)
    pieces = [t[len(head):] if t.startswith(head) else "" for t in texts]
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    return [("" if i in special else p) for i, p in enumerate(pieces)] + [""] * (size - known)
