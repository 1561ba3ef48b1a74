"""The export tests need torch, onnx and onnxscript; the tiny models and their fixtures
(`tiny_checkpoints`, `exported`) live in tests/tiny_models.py and tests/conftest.py."""

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
