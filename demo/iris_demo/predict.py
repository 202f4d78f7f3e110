"""Classify iris measurements with the exported ONNX model.

Usage: ``python -m iris_demo.predict SEPAL_LEN SEPAL_WID PETAL_LEN PETAL_WID [--json]``

Imports only numpy and onnxruntime: the inference image ships neither
scikit-learn nor skl2onnx. The model path comes from ``--model``, then the
``IRIS_MODEL`` environment variable, then the copy committed in the package.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

from iris_demo import CLASS_NAMES, DEFAULT_MODEL_PATH, INPUT_NAME, N_FEATURES

# Usage / bad-input exit code, as in envbuild itself.
EXIT_USAGE = 2


def resolve_model_path(model_path: str | os.PathLike[str] | None = None) -> Path:
    """Return the model to load: the argument, else $IRIS_MODEL, else the packaged model."""
    if model_path is not None:
        return Path(model_path)
    from_env = os.environ.get("IRIS_MODEL")
    return Path(from_env) if from_env else DEFAULT_MODEL_PATH


def providers() -> list[str]:
    """Return the available execution providers, CUDA first when present.

    The same code runs in the CPU and the GPU image; onnxruntime falls back
    along the list, so CPU stays as the last resort.
    """
    available = ort.get_available_providers()
    preferred = "CUDAExecutionProvider"
    if preferred in available:
        return [preferred] + [p for p in available if p != preferred]
    return list(available)


def _session(model_path: str | os.PathLike[str] | None) -> ort.InferenceSession:
    return ort.InferenceSession(str(resolve_model_path(model_path)), providers=providers())


def predict_proba(
    features: list[list[float]], model_path: str | os.PathLike[str] | None = None
) -> np.ndarray:
    """Return class probabilities, shape (n_samples, 3), for each row of ``features``."""
    batch = np.asarray(features, dtype=np.float32).reshape(-1, N_FEATURES)
    _labels, probabilities = _session(model_path).run(None, {INPUT_NAME: batch})
    return np.asarray(probabilities)


def predict(
    features: list[list[float]], model_path: str | os.PathLike[str] | None = None
) -> list[str]:
    """Return the predicted class name for each row of ``features``."""
    probabilities = predict_proba(features, model_path)
    return [CLASS_NAMES[i] for i in np.argmax(probabilities, axis=1)]


def _parse_features(values: list[str]) -> list[float]:
    """Turn the command-line values into floats, or raise ValueError saying why."""
    if len(values) != N_FEATURES:
        raise ValueError(
            f"expected {N_FEATURES} measurements (sepal length, sepal width, "
            f"petal length, petal width in cm), got {len(values)}"
        )
    parsed = []
    for value in values:
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"not a number: {value!r}") from None
        # float() accepts "nan" and "inf", which would yield a meaningless class.
        if not math.isfinite(number):
            raise ValueError(f"not a finite number: {value!r}")
        parsed.append(number)
    return parsed


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m iris_demo.predict", description="Classify one iris flower."
    )
    # Strings, not type=float, so bad input gets our message and exit code.
    parser.add_argument(
        "features",
        nargs="*",
        metavar="FEATURE",
        help="sepal length, sepal width, petal length, petal width (cm)",
    )
    parser.add_argument(
        "--model", help="ONNX model to load (default: $IRIS_MODEL, else the packaged model)"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object")
    args = parser.parse_args(argv)

    try:
        sample = _parse_features(args.features)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    model_path = resolve_model_path(args.model)
    if not model_path.is_file():
        print(f"error: model not found: {model_path} (set --model or IRIS_MODEL)", file=sys.stderr)
        return EXIT_USAGE

    probabilities = predict_proba([sample], model_path)[0]
    index = int(np.argmax(probabilities))
    if args.json:
        result = {
            "class": CLASS_NAMES[index],
            "index": index,
            "probabilities": [round(float(p), 6) for p in probabilities],
        }
        print(json.dumps(result))
    else:
        print(CLASS_NAMES[index])
    return 0


if __name__ == "__main__":
    sys.exit(main())
