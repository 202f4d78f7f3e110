"""Iris demo: a tiny ML project that envbuild locks and packages as an example.

Training (``iris_demo.train``) needs scikit-learn and skl2onnx; inference
(``iris_demo.predict``) needs only numpy and onnxruntime, so the two can live
in different images built from the same lock.
"""

from __future__ import annotations

from pathlib import Path

# Kept here rather than read from sklearn at run time: the inference image has
# no sklearn, and the label order must match the indices the model was trained on.
CLASS_NAMES: tuple[str, ...] = ("setosa", "versicolor", "virginica")

#: Name of the model's single input: float32, shape [None, 4].
INPUT_NAME = "features"

#: Number of measurements per sample (sepal length/width, petal length/width, cm).
N_FEATURES = 4

#: The committed model, resolved relative to the package so it works from any cwd.
DEFAULT_MODEL_PATH: Path = Path(__file__).resolve().parent / "model" / "iris.onnx"

__all__ = ["CLASS_NAMES", "DEFAULT_MODEL_PATH", "INPUT_NAME", "N_FEATURES"]
