"""Inference backends: one small lifecycle class per runtime, one file each.

Import the backend you need from its own module (`engine.backends.onnxruntime_backend`,
`engine.backends.tensorrt_backend`, `engine.backends.torch_backend`); this package imports
none of them, so a box without torch or tensorrt can still use the others.
"""
