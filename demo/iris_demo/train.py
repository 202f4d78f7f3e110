"""Train the iris classifier and export it to a byte-for-byte reproducible ONNX file.

Usage: ``python -m iris_demo.train [--out PATH]``

The model is a LogisticRegression fitted on the iris data bundled with
scikit-learn (no network). The export is checked against sklearn with
onnxruntime before it is written, and every field of the ModelProto that
could differ between runs or tool versions is pinned, so retraining with the
same locked dependencies reproduces the committed ``model/iris.onnx`` exactly.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from iris_demo import DEFAULT_MODEL_PATH, INPUT_NAME, N_FEATURES

#: Fixed so the file does not change when skl2onnx's default opset moves on.
TARGET_OPSET = 17

# Written instead of skl2onnx's own name/version, so upgrading the converter
# alone (with identical weights and graph) does not change the model's bytes.
PRODUCER_NAME = "iris_demo"
PRODUCER_VERSION = "1"


def train() -> tuple[LogisticRegression, np.ndarray, np.ndarray]:
    """Fit the classifier on the full iris dataset and return it with the data (as float32).

    Newton's method on float64 data, to a tight tolerance, reaches the one optimum
    of this (strictly convex) problem whatever BLAS kernel the machine picks: the
    float32 weights the model stores are then the same everywhere. lbfgs at its
    default tolerance stopped at weights that differed in the third digit between
    OpenBLAS kernels (OPENBLAS_CORETYPE=Haswell and the default on one AMD EPYC).
    random_state is set so a change of solver cannot silently introduce randomness.
    """
    features, labels = load_iris(return_X_y=True)
    model = LogisticRegression(solver="newton-cholesky", tol=1e-10, max_iter=1000, random_state=0)
    model.fit(features, labels)
    return model, features.astype(np.float32), labels


def export(model: LogisticRegression) -> onnx.ModelProto:
    """Convert the fitted model to ONNX with all variable metadata pinned."""
    proto = to_onnx(
        model,
        initial_types=[(INPUT_NAME, FloatTensorType([None, N_FEATURES]))],
        target_opset=TARGET_OPSET,
        # A plain float tensor of probabilities instead of a list of dicts
        # (ZipMap), which is simpler to read from numpy.
        options={id(model): {"zipmap": False}},
    )
    proto.producer_name = PRODUCER_NAME
    proto.producer_version = PRODUCER_VERSION
    proto.model_version = 1
    proto.doc_string = ""
    proto.graph.name = "iris"
    proto.graph.doc_string = ""
    del proto.metadata_props[:]
    _dedupe_opsets(proto)
    onnx.checker.check_model(proto)
    return proto


def _dedupe_opsets(proto: onnx.ModelProto) -> None:
    """Keep one opset_import per domain, sorted, so the list is canonical.

    skl2onnx 1.20 lists the default domain twice; harmless to runtimes, but
    the order and duplicates depend on converter internals.
    """
    versions: dict[str, int] = {}
    for opset in proto.opset_import:
        versions[opset.domain] = max(versions.get(opset.domain, 0), opset.version)
    del proto.opset_import[:]
    for domain in sorted(versions):
        proto.opset_import.append(onnx.helper.make_opsetid(domain, versions[domain]))


def check_against_sklearn(
    proto: onnx.ModelProto, model: LogisticRegression, features: np.ndarray
) -> None:
    """Raise if onnxruntime's predictions differ from sklearn's on ``features``."""
    session = ort.InferenceSession(
        proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    onnx_labels, onnx_probs = session.run(None, {INPUT_NAME: features})
    sk_labels = model.predict(features)
    if not np.array_equal(onnx_labels, sk_labels):
        mismatches = int(np.sum(onnx_labels != sk_labels))
        raise RuntimeError(f"ONNX and sklearn disagree on {mismatches} samples")
    # float32 vs float64 arithmetic: probabilities agree closely, not exactly.
    np.testing.assert_allclose(onnx_probs, model.predict_proba(features), atol=1e-4)


def train_and_export(out: Path = DEFAULT_MODEL_PATH) -> float:
    """Train, export, verify and write the model to ``out``; return training accuracy."""
    model, features, labels = train()
    proto = export(model)
    check_against_sklearn(proto, model, features)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(proto.SerializeToString())
    return float(model.score(features, labels))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m iris_demo.train", description="Train and export the iris model."
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_MODEL_PATH,
        help="where to write the ONNX model (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    accuracy = train_and_export(args.out)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"accuracy: {accuracy:.4f} (training set)")
    print(f"wrote {args.out} sha256:{digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
