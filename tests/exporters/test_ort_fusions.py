"""The exported encoder graph gets ONNX Runtime's CPU fusions (bench/export.py against Optimum): GELU becomes
one BiasGelu kernel, the attention scale folds into the QK^T MatMul with no key reshapes, the slower CPU
SkipLayerNormalization is skipped by default; the graph stays standard ONNX and within 1e-4 of PyTorch."""

from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import pretrained.auto as auto  # noqa: E402
from checkpoints import TINY_ENCODER, hf_checkpoint  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from pretrained.errors import InputError  # noqa: E402
from pretrained.exporters import runtime  # noqa: E402
from pretrained.exporters.onnx import export  # noqa: E402
from pretrained.exporters.rewrites import drop_intermediate_shapes, reorder_gelu, rewrite_file  # noqa: E402


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    """(PyTorch checkpoint folder, its dynamo export) of a tiny BERT with exact GELU."""
    root = tmp_path_factory.mktemp("fusions")
    source = hf_checkpoint(root / "pt", "BertConfig", "BertModel", **{**TINY_ENCODER, "hidden_act": "gelu"})
    return source, export(source, root / "onnx", task="feature-extraction", exporter="dynamo")


def _optimized_ops(folder, tmp_path, **kwargs) -> Counter:
    """(domain, op) counts of the graph ONNX Runtime runs for ORTModelForFeatureExtraction(folder, **kwargs)."""
    path = tmp_path / f"optimized-{len(list(tmp_path.iterdir()))}.onnx"
    options = runtime.make_session_options(intra_op_num_threads=1)
    options.optimized_model_filepath = str(path)
    runtime.ORTModelForFeatureExtraction.from_pretrained(folder, session_options=options, **kwargs)
    return Counter((n.domain or "ai.onnx", n.op_type) for n in onnx.load(str(path)).graph.node)


def test_exported_graph_is_standard_onnx_within_tolerance(bert):
    source, folder = bert
    model = onnx.load(str(folder / "model.onnx"))
    onnx.checker.check_model(model)
    assert {n.domain for n in model.graph.node} <= {""}  # no contrib ops: any ONNX runtime reads it
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["Erf"] == 2 and ops["Softmax"] == 2  # one GELU and one attention per layer
    assert ops["Slice"] == 0  # no reshapes of the keys around the QK^T MatMul (torch.onnx's sdpa lowering)
    ours = auto.AutoModel.from_pretrained(source).eval()
    ids = torch.randint(5, 99, (3, 10), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    with torch.no_grad():
        expected = ours(input_ids=ids, attention_mask=mask).last_hidden_state
    got = runtime.ORTModelForFeatureExtraction.from_pretrained(folder)(input_ids=ids, attention_mask=mask)
    torch.testing.assert_close(got.last_hidden_state, expected, atol=1e-4, rtol=0)


def test_ort_fuses_gelu_and_attention_scale_and_skips_skip_layer_norm_on_cpu(bert, tmp_path):
    _, folder = bert
    ops = _optimized_ops(folder, tmp_path)
    assert ops[("com.microsoft", "BiasGelu")] == 2 and ops[("ai.onnx", "Erf")] == 0
    assert ops[("com.microsoft", "FusedMatMul")] == 2  # QK^T with the 1/sqrt(d) scale folded in
    assert ops[("com.microsoft", "SkipLayerNormalization")] == 0  # CPU_DISABLED_OPTIMIZERS, the default
    assert ops[("ai.onnx", "LayerNormalization")] == 5  # embeddings + two per layer
    assert runtime.CPU_DISABLED_OPTIMIZERS == ("SkipLayerNormFusion",)
    # the fusion needs the intermediate shapes our export drops (rewrites.py); on a graph annotated with them
    # (as the dynamo exporter or another tool writes it) the default is what removes it
    annotated = tmp_path / "annotated"
    shutil.copytree(folder, annotated)
    graph = onnx.shape_inference.infer_shapes(onnx.load(str(annotated / "model.onnx")), data_prop=True)
    onnx.save(graph, str(annotated / "model.onnx"))
    assert _optimized_ops(annotated, tmp_path)[("com.microsoft", "SkipLayerNormalization")] == 0
    assert _optimized_ops(annotated, tmp_path, disabled_optimizers=[])[("com.microsoft", "SkipLayerNormalization")] > 0
    assert _optimized_ops(folder, tmp_path, disabled_optimizers=[])[("com.microsoft", "SkipLayerNormalization")] == 0


def test_exported_graph_declares_the_shapes_of_its_inputs_and_outputs_only(bert):
    """ONNX Runtime infers the rest, as for a TorchScript export (Optimum's); given the dynamo exporter's
    symbolic shape of every intermediate, its memory planner made the same kernels run slower (bench/export.py)."""
    _, folder = bert
    model = onnx.load(str(folder / "model.onnx"))
    assert len(model.graph.value_info) == 0
    for value in [*model.graph.input, *model.graph.output]:
        dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        assert dims[:2] == ["batch", "sequence"], (value.name, dims)


def test_drop_intermediate_shapes_keeps_the_computation():
    x = np.random.default_rng(2).standard_normal((4, 8)).astype(np.float32)
    model = _gelu_graph(0.5)
    model = onnx.shape_inference.infer_shapes(model)
    assert len(model.graph.value_info) == 4  # d, e, a, h
    before = _run(model, x)
    assert drop_intermediate_shapes(model.graph) == 4
    assert len(model.graph.value_info) == 0 and drop_intermediate_shapes(model.graph) == 0
    assert [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] == [4, 8]
    onnx.checker.check_model(model)
    np.testing.assert_array_equal(_run(model, x), before)


def test_disabled_optimizers_default_and_validation():
    assert runtime._disabled_optimizers(None, ["CPUExecutionProvider"]) == ["SkipLayerNormFusion"]
    assert runtime._disabled_optimizers(None, ["CUDAExecutionProvider", "CPUExecutionProvider"]) == []
    assert runtime._disabled_optimizers(None, [("CPUExecutionProvider", {})]) == ["SkipLayerNormFusion"]
    assert runtime._disabled_optimizers(["GeluFusion"], ["CPUExecutionProvider"]) == ["GeluFusion"]
    with pytest.raises(InputError, match="disabled_optimizers='SkipLayerNormFusion'"):
        runtime._disabled_optimizers("SkipLayerNormFusion", ["CPUExecutionProvider"])


def _gelu_graph(half: float):
    """y = x * (half * (1 + erf(x / sqrt 2))), as torch.onnx's dynamo exporter writes GELU at opset 18."""
    constants = [numpy_helper.from_array(np.array(v, dtype=np.float32), n)
                 for n, v in (("sqrt2", np.sqrt(2)), ("one", 1.0), ("half", half))]
    nodes = [helper.make_node("Div", ["x", "sqrt2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["a"]), helper.make_node("Mul", ["half", "a"], ["h"]),
             helper.make_node("Mul", ["x", "h"], ["y"])]
    graph = helper.make_graph(nodes, "gelu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])], constants)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _run(model, x):
    """The graph (a ModelProto or a path) run as written: ONNX Runtime's fused Gelu kernel rounds differently."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    graph = model if isinstance(model, str) else model.SerializeToString()
    session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_reorder_gelu_is_bit_exact_and_leaves_other_patterns():
    x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32) * 3
    model = _gelu_graph(0.5)
    before = _run(model, x)
    assert reorder_gelu(model.graph) == 1
    onnx.checker.check_model(model)
    outer = model.graph.node[-1]
    assert [n.op_type for n in model.graph.node] == ["Div", "Erf", "Add", "Mul", "Mul"]
    assert list(model.graph.node[3].input) == ["x", "a"] and list(outer.input) == ["h", "half"]
    assert list(outer.output) == ["y"]
    np.testing.assert_array_equal(_run(model, x), before)
    assert reorder_gelu(model.graph) == 0  # already in ONNX Runtime's order
    other = _gelu_graph(0.25)  # not GELU: untouched
    assert reorder_gelu(other.graph) == 0 and list(other.graph.node[-1].input) == ["x", "h"]


def test_rewrite_file_reads_constants_from_external_data_and_keeps_it(tmp_path):
    """A large export keeps its weights (and here every constant) in model.onnx.data: the rewrite reads
    the scalars from there and rewrites model.onnx only."""
    x = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    model = _gelu_graph(0.5)
    before = _run(model, x)
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="model.onnx.data", size_threshold=0)
    data = (tmp_path / "model.onnx.data").read_bytes()
    assert rewrite_file(path) == 1
    assert (tmp_path / "model.onnx.data").read_bytes() == data
    saved = onnx.load(str(path), load_external_data=False)
    assert all(t.data_location == TensorProto.EXTERNAL for t in saved.graph.initializer)
    assert list(saved.graph.node[-1].input) == ["h", "half"]
    np.testing.assert_array_equal(_run(str(path), x), before)
