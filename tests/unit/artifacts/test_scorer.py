"""The scorer's choice of output and its float64 sigmoid (artifacts/scorer.py); the SavedModel itself is
loaded by the model-runtime integration tests."""
import math

import numpy as np
import pytest

from easyrec_online.artifacts.blend import blend
from easyrec_online.artifacts.scorer import ScoringError, primary_output, sigmoid


def test_the_logits_are_read_where_the_model_exports_them():
    assert primary_output(["logits", "probs"]) == ("logits", True)
    assert primary_output(["probs_main", "logits_main", "probs_aux"]) == ("logits_main", True)
    assert primary_output(["probs"]) == ("probs", False)
    with pytest.raises(ScoringError):
        primary_output(["y"])


def test_confident_scores_stay_ordered_where_float32_ties_them():
    logits = [18.0, 20.0, 30.0, -90.0, -100.0]
    assert len(set(np.float32(1.0) / (1.0 + np.exp(-np.float32(logits))))) < len(logits)  # float32 rounds them
    probabilities = sigmoid(logits)
    assert list(np.argsort(probabilities)) == [4, 3, 0, 1, 2]
    assert all(0.0 < p < 1.0 for p in probabilities)
    assert math.isclose(sigmoid([0.0])[0], 0.5) and np.all(np.isfinite(sigmoid([1e6, -1e6])))


def test_confident_scores_without_cf_evidence_keep_their_order_through_the_blend():
    probabilities = list(sigmoid([18.0, 20.0, 30.0]))
    assert blend(probabilities, [0.0, 0.0, 0.0], 2.0, 1.0) == probabilities
