"""Tests for the embedded demo project under demo/ (iris classifier, ONNX).

They use the real scikit-learn, skl2onnx and onnxruntime; the ``demo`` marker
selects them, and CI installs the demo's dependencies rather than skipping.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.paths import REPO

DEMO_DIR = REPO / "demo"
# Let the tests run without PYTHONPATH=demo; subprocesses get it explicitly below.
if str(DEMO_DIR) not in sys.path:
    sys.path.insert(0, str(DEMO_DIR))

from iris_demo import DEFAULT_MODEL_PATH  # noqa: E402
from iris_demo.predict import predict  # noqa: E402

pytestmark = pytest.mark.demo

COMMITTED_MODEL = DEMO_DIR / "iris_demo" / "model" / "iris.onnx"


def test_predict_with_committed_model() -> None:
    """The committed model classifies a typical setosa and virginica correctly."""
    assert COMMITTED_MODEL.resolve() == DEFAULT_MODEL_PATH
    samples = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
    assert predict(samples, model_path=COMMITTED_MODEL) == ["setosa", "virginica"]


def test_training_reproduces_committed_model(tmp_path: Path) -> None:
    """Retraining writes the committed iris.onnx byte for byte."""
    from iris_demo.train import train_and_export

    out = tmp_path / "iris.onnx"
    accuracy = train_and_export(out)
    assert accuracy > 0.9
    assert out.read_bytes() == COMMITTED_MODEL.read_bytes()


def test_predict_module_needs_no_training_deps() -> None:
    """Importing iris_demo.predict pulls in neither sklearn nor skl2onnx.

    Run in a fresh interpreter: this test process has already imported both.
    """
    code = (
        "import sys, iris_demo.predict\n"
        "loaded = [m for m in ('sklearn', 'skl2onnx') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    env = {**os.environ, "PYTHONPATH": str(DEMO_DIR)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
