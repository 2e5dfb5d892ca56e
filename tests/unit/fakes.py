"""Stand-ins for a loaded SavedModel in unit tests: each answers probabilities by a rule of its own;
FakeScorer gives it the scorer's interface (artifacts/scorer.SavedModelScorer: logits, and scores
with a version's calibration)."""
import math


class FakeScorer:
    def probabilities(self, columns):
        raise NotImplementedError

    def logits(self, columns):
        clipped = [min(max(float(p), 1e-15), 1.0 - 1e-15) for p in self.probabilities(columns)]
        return [math.log(p / (1.0 - p)) for p in clipped]

    def score(self, columns, calibration=(1.0, 0.0)):
        if tuple(calibration) == (1.0, 0.0):
            return self.probabilities(columns)
        a, b = calibration
        return [1.0 / (1.0 + math.exp(-(a * z + b))) for z in self.logits(columns)]
