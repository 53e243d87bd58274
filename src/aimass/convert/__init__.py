"""Converting a model to ONNX and verifying that onnxruntime reproduces it.

Serving plans use it (a verified ONNX copy saved beside a version's own
artifact); compression reuses the same convert-and-verify core.
"""
