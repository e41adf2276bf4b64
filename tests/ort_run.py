"""Run one graph on a feed saved as .npz, in whatever Python runs this: only onnxruntime and numpy
are imported, so it runs in a venv holding another onnxruntime (tests/test_conformance_oldest.py).

    python ort_run.py GRAPH FEED.npz OUT.npz OUTPUT [OUTPUT ...]

OUT.npz holds the outputs by name and `version` (onnxruntime.__version__)."""

import sys

import numpy as np
import onnxruntime as ort


def main() -> None:
    graph, feed, out, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # as runtime/session.py
    sess = ort.InferenceSession(graph, so, providers=["CPUExecutionProvider"])
    with np.load(feed) as f:
        inputs = {name: f[name] for name in f.files}
    values = sess.run(names, inputs)
    np.savez(out, version=np.array(ort.__version__), **dict(zip(names, values, strict=True)))


if __name__ == "__main__":
    main()
