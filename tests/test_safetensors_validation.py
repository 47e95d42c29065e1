"""The safetensors reader refuses every malformed file MISSION.md lists, naming the file."""

from __future__ import annotations

import json
import struct

import pytest
import torch

from pretrained.errors import CheckpointError
from pretrained.weights import read_safetensors_header


def write(path, header, data=b"", raw_header=None, declared_length=None):
    body = raw_header if raw_header is not None else json.dumps(header).encode()
    n = len(body) if declared_length is None else declared_length
    path.write_bytes(struct.pack("<Q", n) + body + data)
    return str(path)


def test_valid_file_round_trips(tmp_path):
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(2, 3), "b": torch.ones(4, dtype=torch.int64)}, tmp_path / "ok.safetensors")
    header = read_safetensors_header(str(tmp_path / "ok.safetensors"))
    assert header["a"]["shape"] == [2, 3] and header["b"]["dtype"] == "I64"


CASES = {
    "short": (lambda p: (p.write_bytes(b"\x01\x02"), str(p))[1], "too short"),
    "huge header": (lambda p: write(p, {}, declared_length=200 * 1024 * 1024), "100 MB"),
    "header past end": (lambda p: write(p, {}, declared_length=4096), "past the end"),
    "not utf8": (lambda p: write(p, None, raw_header=b"\xff\xfe{}"), "not UTF-8"),
    "not json": (lambda p: write(p, None, raw_header=b"{'a': 1"), "not valid JSON"),
    "not object": (lambda p: write(p, [1, 2]), "JSON object"),
    "bad dtype": (lambda p: write(p, {"a": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4), "unknown dtype"),
    "size mismatch": (lambda p: write(p, {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4), "needs 8"),
    "negative shape": (lambda p: write(p, {"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4), "invalid shape"),
    "overlap": (lambda p: write(p, {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                    "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8), "overlaps"),
    "hole": (lambda p: write(p, {"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8), "hole"),
    "trailing bytes": (lambda p: write(p, {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 9), "trailing"),
    "truncated data": (lambda p: write(p, {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8), "truncated"),
    "overflowing size": (lambda p: write(p, {"a": {"dtype": "F64", "shape": [2**62, 2**62], "data_offsets": [0, 8]}}, b"\0" * 8), "needs"),
    "duplicate keys": (lambda p: write(p, None, b"\0" * 4, raw_header=(
        b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},'
        b' "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}')), "twice"),
    "bad metadata": (lambda p: write(p, {"__metadata__": {"k": 1}}), "__metadata__"),
    "extra field": (lambda p: write(p, {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": 1}}, b"\0" * 4), "exactly"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_files_are_refused(tmp_path, case):
    make, message = CASES[case]
    path = make(tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError, match=message) as err:
        read_safetensors_header(path)
    assert "bad.safetensors" in str(err.value)
