"""Scoring with an exported EasyRec SavedModel (model runtime: TensorFlow 1.15).

A `SavedModelScorer` owns one graph + session, loaded once; `score` is a single Session.run with
one string tensor per feature (EasyRec hashes ids inside the graph), returning the primary
output's probabilities.
"""
from __future__ import annotations

import threading
from typing import Dict, Iterable, Sequence, Tuple

import numpy as np

# The output a model's score is: single-task models' probs; our multi-task ones name the primary task "main".
PRIMARY_OUTPUTS = ("probs", "probs_main")
# Their logits, read instead where exported (EasyRec exports both for binary classification): the
# graph's float32 sigmoid rounds every logit above about 17 to exactly 1.0 (below about -88 to 0.0),
# so a user's confident scores tie and their order is lost (seen after a user's 40 purchases of an
# item: it and the best-liked item both at 1.0). The float64 sigmoid of the logit keeps them ordered.
_LOGITS_OF = {"probs": "logits", "probs_main": "logits_main"}


def primary_output(names: Iterable[str]) -> Tuple[str, bool]:
    """(the output to read, whether it is a logit) among a model's output names."""
    names = set(names)
    probs = next((name for name in PRIMARY_OUTPUTS if name in names), None)
    if probs is None:
        raise ScoringError("the model has none of the outputs {}".format(PRIMARY_OUTPUTS))
    return (_LOGITS_OF[probs], True) if _LOGITS_OF[probs] in names else (probs, False)


def sigmoid(logits: Sequence[float]) -> np.ndarray:
    """The float64 logistic of each logit, without overflow for large |z|."""
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


class ScoringError(Exception):
    pass


class SavedModelScorer:
    def __init__(self, export_dir: str) -> None:
        import tensorflow as tf  # imported here: the control-plane runtime never loads this module's TF

        self.export_dir = export_dir
        self._graph = tf.Graph()
        config = tf.ConfigProto(intra_op_parallelism_threads=2, inter_op_parallelism_threads=2)
        self._session = tf.Session(graph=self._graph, config=config)
        with self._graph.as_default():
            meta = tf.saved_model.loader.load(self._session, ["serve"], export_dir)
        signature = meta.signature_def["serving_default"]
        self.input_names = sorted(signature.inputs)
        self._inputs = {name: self._graph.get_tensor_by_name(info.name) for name, info in signature.inputs.items()}
        try:
            output, self._is_logit = primary_output(signature.outputs)
        except ScoringError as exc:
            raise ScoringError("SavedModel at {}: {}".format(export_dir, exc)) from None
        self._probs = self._graph.get_tensor_by_name(signature.outputs[output].name)
        self.output_names = tuple(sorted(signature.outputs))
        self._outputs = {name: self._graph.get_tensor_by_name(info.name) for name, info in signature.outputs.items()}
        # The graph's own saver (every SavedModel has one): load_variables swaps in another checkpoint.
        self._restore_op = self._graph.get_operation_by_name(meta.saver_def.restore_op_name)
        self._restore_path = self._graph.get_tensor_by_name(meta.saver_def.filename_tensor_name)
        self._closed = False
        self._lock = threading.Lock()

    def load_variables(self, checkpoint_prefix: str) -> None:
        """Score with another checkpoint's weights from now on: a checkpoint of the graph this SavedModel
        was exported from (a warm version of its lineage). A restore into the loaded session, no second
        graph: a warm update judges its candidate in a fraction of a SavedModel load."""
        self._session.run(self._restore_op, {self._restore_path: checkpoint_prefix})

    def logits(self, columns: Dict[str, Sequence[str]]) -> np.ndarray:
        """The model's logit of each row, float64 (from a probability output: its logit, clipped)."""
        missing = [name for name in self.input_names if name not in columns]
        if missing:
            raise ScoringError("model expects inputs {} that the request does not provide".format(missing))
        lengths = {len(columns[name]) for name in self.input_names}
        if len(lengths) != 1:
            raise ScoringError("feature columns differ in length: {}".format(sorted(lengths)))
        feed = {self._inputs[name]: columns[name] for name in self.input_names}  # lists or arrays
        out = np.asarray(self._session.run(self._probs, feed_dict=feed), dtype=np.float64).reshape(-1)
        if not self._is_logit:
            clipped = np.clip(out, 1e-15, 1.0 - 1e-15)
            out = np.log(clipped / (1.0 - clipped))
        if not np.all(np.isfinite(out)):
            raise ScoringError("model produced non-finite scores")
        return out

    def score(self, columns: Dict[str, Sequence[str]], calibration: Tuple[float, float] = (1.0, 0.0)) -> np.ndarray:
        """The probability of each row: sigmoid(a * logit + b), with the version's calibration (a, b)
        (artifacts/blend.py; (1, 0): the model's own)."""
        a, b = calibration
        z = self.logits(columns)
        return sigmoid(z if (a, b) == (1.0, 0.0) else a * z + b)

    def embed(self, output: str, columns: Dict[str, Sequence[str]]) -> np.ndarray:
        """A tower's embeddings, (rows, interests, dim). EasyRec's matching models export them as
        strings: "0.1,0.2" (DSSM: one vector) or "0.1,0.2|0.3,0.4" (MIND: one per interest)."""
        feed = {self._inputs[name]: list(columns[name]) for name in self.input_names}
        joined = self._session.run(self._outputs[output], feed_dict=feed)
        rows = [[np.array(part.split(","), dtype=np.float64) for part in v.decode().split("|")]
                for v in np.reshape(joined, -1)]
        return np.asarray(rows)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._session.close()
                self._closed = True


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC by ranks, ties sharing their mean rank (what sklearn's roc_auc_score computes)."""
    order = np.argsort(p, kind="mergesort")
    ordered = p[order]
    ranks = np.empty(len(p), dtype=np.float64)
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(p)]
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end - 1) / 2.0 + 1.0
    positives = float(y.sum())
    negatives = len(y) - positives
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def auc_and_logloss(labels: Sequence[float], probs: Sequence[float]) -> Dict[str, float]:
    """Holdout metrics. AUC is left out when the holdout has a single class (it is undefined there).
    numpy only, so that either runtime evaluates (a unit test, the trainer)."""
    y = np.asarray([1 if label >= 0.5 else 0 for label in labels])
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1 - 1e-7)
    logloss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1.0 - p))) if len(y) else 0.0
    metrics: Dict[str, float] = {"logloss": logloss, "num_eval_rows": float(len(y)), "num_positive": float(y.sum())}
    if 0 < y.sum() < len(y):
        metrics["auc"] = roc_auc(y, p)
    return metrics
