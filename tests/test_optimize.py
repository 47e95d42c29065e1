"""pretrained.optimize: the inference linear agrees with F.linear and autograd never takes it; eval mode swaps it in, train mode takes it out."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pretrained import optimize


@pytest.mark.parametrize("shape", [(1, 1, 768), (8, 1, 768), (2, 33, 768), (0, 768)])
def test_linear_matches_f_linear(shape):
    torch.manual_seed(0)
    w, b, x = torch.randn(3000, 768) * 0.02, torch.randn(3000), torch.randn(*shape)
    with torch.no_grad():
        torch.testing.assert_close(optimize.linear(x, w, b), F.linear(x, w, b), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(optimize.linear(x, w), F.linear(x, w), atol=1e-5, rtol=1e-5)


def test_linear_takes_onednn_only_where_no_gradient_is_needed(monkeypatch):
    if optimize._onednn_linear is None:
        pytest.skip("this torch build has no oneDNN linear")
    calls = []
    monkeypatch.setattr(optimize, "_onednn_linear", lambda *a: calls.append(1) or F.linear(*a[:3]))
    m = optimize.InferenceLinear(768, 3000)
    x = torch.randn(4, 768)
    with torch.no_grad():
        m(x)
    assert calls == [1]
    m(x).sum().backward()  # parameters require grad: plain F.linear, with its gradient
    assert calls == [1] and m.weight.grad is not None
    with torch.no_grad():
        optimize.InferenceLinear(64, 64)(torch.randn(1, 64))  # too little work to repay oneDNN's fixed cost
        m.double()(x.double())  # float64 stays on F.linear
        m.float()
        traced = torch.jit.trace(m, x, check_trace=False)  # a traced graph (export formats) holds F.linear's op
        assert "mkldnn" not in str(traced.graph)
        exported = torch.export.export(m, (x,))  # so does an exported one (ONNX knows aten.linear)
        targets = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
        assert targets == {"aten.linear.default"}
    assert calls == [1]


@pytest.mark.parametrize("rows", [1, 2])
def test_compiled_linear(rows):
    """Under torch.compile one row becomes a multiply-and-sum (inductor writes it as one reduction loop,
    faster than any matmul call for a decode step) and more rows the oneDNN kernel as one opaque op
    (inductor would otherwise call MKL). Both agree with F.linear."""
    if optimize._onednn_linear is None:
        pytest.skip("this torch build has no oneDNN linear")
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch.manual_seed(0)
    m, x = optimize.InferenceLinear(768, 3000), torch.randn(rows, 1, 768)
    with torch.no_grad():
        out = torch.compile(m, backend=backend, fullgraph=True)(x)
        compiled = torch.compile(m, fullgraph=True)(x)  # inductor runs it
    targets = {str(n.target) for n in graphs[0].graph.nodes if n.op in ("call_function", "call_method")}
    assert "<built-in function linear>" not in targets  # what a plain nn.Linear traces to
    assert ("pretrained.onednn_linear.default" in targets) == (rows > 1) and ("sum" in targets) == (rows == 1)
    torch.testing.assert_close(out, F.linear(x, m.weight, m.bias), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(compiled, F.linear(x, m.weight, m.bias), atol=1e-5, rtol=1e-5)


def test_linear_gradient_equals_nn_linear():
    torch.manual_seed(0)
    ours, ref = optimize.InferenceLinear(768, 3000), torch.nn.Linear(768, 3000)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(4, 768)
    ours(x).pow(2).sum().backward()
    ref(x).pow(2).sum().backward()
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad)


def fused_and_plain(cls, folder):
    """The checkpoint in `folder` loaded twice: in eval mode with the inference optimisations (fused
    projections), and in eval mode without them (the reference)."""
    model, reference = cls.from_pretrained(folder), cls.from_pretrained(folder)
    reference.use_inference_optimizations = False
    return model, reference.eval()


def fused_calls(run) -> tuple[object, int]:
    """run()'s result under no_grad and how many fused projection calls it made."""
    from pretrained.optimize import FusedProjection

    calls, original = [], FusedProjection.__call__
    FusedProjection.__call__ = lambda self, x: calls.append(1) or original(self, x)
    try:
        with torch.no_grad():
            return run(), len(calls)
    finally:
        FusedProjection.__call__ = original


def test_fused_projections_run_one_matmul_and_keep_every_key(tmp_path):
    import pretrained
    from pretrained.optimize import FusedProjection

    config = pretrained.LlamaConfig(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2)
    torch.manual_seed(0)
    pretrained.LlamaForCausalLM(config).save_pretrained(tmp_path)
    model, reference = fused_and_plain(pretrained.LlamaForCausalLM, tmp_path)
    attn = model.model.layers[0].self_attn
    fused = attn.q_proj.fused_projection
    assert isinstance(fused, FusedProjection) and attn.k_proj.weight.untyped_storage().data_ptr() == \
        attn.q_proj.weight.untyped_storage().data_ptr()  # one tensor, no second copy
    assert set(model.state_dict()) == set(reference.state_dict())
    ids = torch.tensor([[5, 6, 7, 8]])
    out, calls = fused_calls(lambda: model(ids).logits)
    assert calls == 4  # q/k/v and gate/up of two layers
    torch.testing.assert_close(out, reference(ids).logits, atol=1e-5, rtol=1e-5)
    model.save_pretrained(tmp_path / "again")  # slices of one tensor save as separate tensors
    assert set(pretrained.LlamaForCausalLM.from_pretrained(tmp_path / "again").state_dict()) == set(model.state_dict())
    model.train()  # plain modules, gradients reach each projection
    model(ids, labels=ids).loss.backward()
    assert attn.q_proj.weight.grad is not None and attn.v_proj.weight.grad is not None
    model.eval().double()  # weights replaced: the fused tensor no longer serves, each module runs alone
    torch.testing.assert_close(model(ids).logits, reference.double()(ids).logits, atol=1e-6, rtol=1e-6)


def test_fusing_keeps_parameter_objects_so_an_optimizer_keeps_training_them(tmp_path):
    """Evaluating mid-training (eval() fuses, train() unfuses) must not swap the Parameter objects the optimizer
    holds: fused weights are views the same Parameters point at, and updates reach the fused tensor."""
    import pretrained

    config = pretrained.LlamaConfig(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                                    num_attention_heads=4, num_key_value_heads=2)
    model = pretrained.LlamaForCausalLM(config)
    before = [id(p) for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ids = torch.tensor([[5, 6, 7, 8]])
    model.eval()
    attn = model.model.layers[0].self_attn
    assert attn.q_proj.fused_projection is not None and [id(p) for p in model.parameters()] == before
    model.train()
    model(ids, labels=ids).loss.backward()
    optimizer.step()
    model.eval()  # the fused tensor saw the update: fused and separate projections agree
    with torch.no_grad():
        fused = model(ids).logits
        model.use_inference_optimizations = False
        model.eval()
        torch.testing.assert_close(fused, model(ids).logits, atol=1e-6, rtol=1e-6)


def test_a_fused_group_may_mix_biased_and_bias_free_projections(tmp_path):
    """Whisper's k_proj has no bias while q_proj and v_proj have one: self-attention fuses q/k/v and
    cross-attention k/v anyway (zeros stand in for the missing bias), k_proj keeps no bias of its own,
    and decoding gives the unfused model's logits."""
    import pretrained
    from pretrained.optimize import FusedProjection

    config = pretrained.WhisperConfig(vocab_size=99, d_model=32, encoder_layers=1, decoder_layers=2,
                                      encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=48,
                                      decoder_ffn_dim=48, max_source_positions=30, max_target_positions=20,
                                      decoder_start_token_id=1, pad_token_id=0, eos_token_id=2, bos_token_id=1)
    torch.manual_seed(0)
    pretrained.WhisperForConditionalGeneration(config).save_pretrained(tmp_path)
    model, reference = fused_and_plain(pretrained.WhisperForConditionalGeneration, tmp_path)
    layer = model.model.decoder.layers[0]
    assert isinstance(layer.self_attn.q_proj.fused_projection, FusedProjection)
    assert isinstance(layer.encoder_attn.k_proj.fused_projection, FusedProjection)
    assert layer.self_attn.k_proj.bias is None and layer.encoder_attn.k_proj.bias is None
    assert set(model.state_dict()) == set(reference.state_dict())
    features = torch.randn(1, 80, 60)
    decoder_ids = torch.tensor([[1, 5, 6, 7]])
    out, calls = fused_calls(lambda: model(input_features=features, decoder_input_ids=decoder_ids).logits)
    assert calls == 1 + 2 * 2  # the encoder layer's q/k/v; each decoder layer's q/k/v and cross k/v
    with torch.no_grad():
        torch.testing.assert_close(out, reference(input_features=features, decoder_input_ids=decoder_ids).logits,
                                   atol=1e-5, rtol=1e-5)
