"""Export to ONNX and run the exported graphs: onnx.py (export + validation), graphs.py (the modules
that get traced), runtime.py (ORTModelFor* with our API), quantize.py (ONNX Runtime int8).
Everything here needs the `onnx` extra: pip install 'pretrained[onnx]'."""
