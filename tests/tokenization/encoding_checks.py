"""Comparison helpers for tokenizer parity tests (a plain module: `from conftest import` is ambiguous
when several test folders have a conftest)."""

def assert_same_encoding(ours, theirs, context=""):
    """Every key transformers returned is present in ours with equal values (tuples and lists alike)."""
    assert set(theirs.keys()) == set(ours.keys()), context
    for key in theirs.keys():
        a, b = ours[key], theirs[key]
        if hasattr(b, "tolist"):
            assert type(a).__module__.split(".")[0] == type(b).__module__.split(".")[0], key
            a, b = a.tolist(), b.tolist()
        assert _plain(a) == _plain(b), f"{context} {key}"


def _plain(x):
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def compare_call(ours, theirs, *args, **kwargs):
    a = ours(*args, **kwargs)
    b = theirs(*args, **kwargs)
    assert_same_encoding(a, b, f"kwargs={kwargs}")
    return a, b


FULL_KEYS_CALL = dict(return_offsets_mapping=True, return_special_tokens_mask=True, return_length=True)
