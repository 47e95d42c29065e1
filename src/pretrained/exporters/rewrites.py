"""Rewrites of an exported graph into the equivalent forms that ONNX Runtime's graph fusions recognise.
Standard ONNX operators in, standard operators out: the graph stays valid for any runtime.

torch.onnx's dynamo exporter (opset < 20, no Gelu operator) writes exact GELU as
x * (0.5 * (1 + erf(x / sqrt 2))); ONNX Runtime's GeluFusion matches only (x * (1 + erf(x / sqrt 2))) * 0.5
(TorchScript's order), so the dynamo graph kept five elementwise passes per MLP where TorchScript's
gets one BiasGelu kernel. Scaling by 0.5 is exact in floating point, so the reordered graph computes
the same values bit for bit.

The dynamo exporter also annotates every intermediate value with its symbolic shape (value_info). Given
them, ONNX Runtime's memory planner shares buffers between more of the activations, and the same kernels
ran slower: MiniLM batch 32 x 16 tokens, one thread, ~4% (bench/export.py against Optimum); keeping them
was faster nowhere (32 x 128 and GPT-2 decoding: the same). The rewrite drops them, keeping the shapes of the graph's inputs and
outputs, as a TorchScript export declares; every runtime infers the rest itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def rewrite_file(path: Path) -> int:
    """Rewrite the graph at `path` in place (external weights, if any, are left untouched): GELU reordered,
    intermediate shapes dropped; returns the number of GELU patterns rewritten."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    count = reorder_gelu(model.graph, base_dir=str(Path(path).parent))
    if drop_intermediate_shapes(model.graph) or count:
        onnx.save(model, str(path))
    return count


def drop_intermediate_shapes(graph) -> int:
    """Remove the graph's value_info (shapes of intermediate values; inputs and outputs keep theirs),
    in place; returns how many were removed."""
    count = len(graph.value_info)
    del graph.value_info[:]
    return count


def reorder_gelu(graph, base_dir: str = "") -> int:
    """x * (0.5 * (1 + erf(x / sqrt 2))) -> (x * (1 + erf(x / sqrt 2))) * 0.5, in place; returns how many.
    base_dir: where the graph's external data files are (its constants may be stored there)."""
    producer = {out: node for node in graph.node for out in node.output}
    uses: dict[str, int] = {}  # the inner Mul's value changes: it must feed the outer Mul only
    for name in [i for node in graph.node for i in node.input] + [o.name for o in graph.output]:
        uses[name] = uses.get(name, 0) + 1
    scalars = _scalars(graph, base_dir)
    count = 0
    for outer in graph.node:
        if outer.op_type != "Mul" or len(outer.input) != 2:
            continue
        for x, half_out in (outer.input, outer.input[::-1]):
            half = producer.get(half_out)
            if half is None or half.op_type != "Mul" or uses.get(half_out) != 1:
                continue
            half_name, plus_one_out = _split_scalar(half.input, scalars, 0.5)
            plus_one = producer.get(plus_one_out)
            if half_name is None or plus_one is None or plus_one.op_type != "Add":
                continue
            _, erf_out = _split_scalar(plus_one.input, scalars, 1.0)
            erf = producer.get(erf_out)
            div = producer.get(erf.input[0]) if erf is not None and erf.op_type == "Erf" else None
            if (div is None or div.op_type != "Div" or div.input[0] != x
                    or not np.isclose(scalars.get(div.input[1], np.nan), np.sqrt(2.0), rtol=1e-6)):
                continue
            # the inner Mul now takes x; the outer one scales by 0.5 and keeps the output's name
            _set_inputs(half, [x, plus_one_out])
            _set_inputs(outer, [half_out, half_name])
            count += 1
            break
    return count


def _set_inputs(node, names: list[str]) -> None:
    del node.input[:]
    node.input.extend(names)


def _scalars(graph, base_dir: str) -> dict[str, float]:
    """Name -> value of every one-element float constant (initializer or Constant node); one stored in an
    external data file is read from it (a few bytes at its offset)."""
    from onnx import numpy_helper

    tensors = [(t.name, t) for t in graph.initializer]
    tensors += [(node.output[0], a.t) for node in graph.node if node.op_type == "Constant"
                for a in node.attribute if a.name == "value"]
    out = {}
    for name, tensor in tensors:
        if tensor.data_type in (1, 10, 11, 16) and int(np.prod(tensor.dims)) == 1:
            out[name] = float(numpy_helper.to_array(tensor, base_dir).reshape(()))
    return out


def _split_scalar(inputs, scalars: dict[str, float], value: float) -> tuple[str | None, str | None]:
    """(the input that is the constant `value`, the other input) of a binary node; (None, None) if neither is."""
    if len(inputs) != 2:
        return None, None
    for a, b in (inputs, inputs[::-1]):
        if scalars.get(a) == value:
            return a, b
    return None, None
