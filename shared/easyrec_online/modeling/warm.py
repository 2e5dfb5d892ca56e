"""The fast incremental path: one lineage's training graph and session, kept alive between updates.

A cold update (modeling/job.py) pays, every time, for the TensorFlow import, EasyRec's graph
construction, the restore, checkpoint saves and an export that rebuilds the graph again. None of
that depends on the data. `WarmTrainer` builds EasyRec's own training graph once (its input
preprocessing, model and optimizer, exactly as EasyRec's estimator builds them, fed through
placeholders instead of a tf.data pipeline), restores the lineage's checkpoint once, and then per
update only runs training steps on the new rows.

Publishing needs no export either: within a lineage the serving graph (saved_model.pb) never
changes, and the SavedModel's variables file is a checkpoint restored by variable name. A warm
version is therefore the lineage's saved_model.pb (an S3 copy), plus the session's variables saved
once and stored both as the version's checkpoint and as its SavedModel variables.

Model runtime only (TensorFlow 1.15 + EasyRec).
"""
from __future__ import annotations

import logging
import os
import random
from typing import Any, Dict, List, Sequence, Tuple

from easyrec_online.artifacts.features.encode import Example, Profiles, encode
from easyrec_online.artifacts.features.spec import LABEL_COLUMNS, FeatureSpec
from easyrec_online.modeling.replay import Labels, ReplaySample, Row

logger = logging.getLogger(__name__)


class WarmTrainer:
    def __init__(self, pipeline_text: str, spec: FeatureSpec, workdir: str, accumulator_cap: float = 0.0,
                 replay_rows: int = 0) -> None:
        import tensorflow as tf

        from easyrec_online.modeling.easyrec import build_training_graph

        self.spec = spec
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.graph = tf.Graph()
        with self.graph.as_default():
            built = build_training_graph(pipeline_text, workdir)
            self.inputs, self.global_step, self.train_op = built.inputs, built.global_step, built.train_op
            self.loss, self.probs = built.loss, built.probs
            self.saver = tf.train.Saver(max_to_keep=None)
            # Adagrad's step size is lr / sqrt(accumulated squared gradients): on a stream that never ends
            # the accumulators only grow, and a model trained for weeks would all but stop learning from
            # new actions. Capping them (ADAGRAD_ACCUMULATOR_CAP) keeps every step at least lr / sqrt(cap).
            slots = [v for v in tf.global_variables() if v.op.name.endswith("/Adagrad")]
            self._cap_accumulators = ([tf.assign(v, tf.minimum(v, accumulator_cap)) for v in slots]
                                      if accumulator_cap > 0 and slots else [])
            self._largest_accumulator = (tf.reduce_max(tf.stack([tf.reduce_max(v) for v in slots]))
                                         if slots else tf.constant(0.0))
            self._init = [tf.global_variables_initializer(), tf.local_variables_initializer(),
                          tf.tables_initializer()]
        session_config = tf.ConfigProto(intra_op_parallelism_threads=2, inter_op_parallelism_threads=2)
        self.session = tf.Session(graph=self.graph, config=session_config)
        self.session.run(self._init)
        self.step = 0
        # A uniform sample (reservoir sampling) of every row this trainer's lineage trained on (encoded,
        # with their labels), replayed beside an update's new rows: the whole past, not only the
        # latest rows, so that a stream of updates on the latest users does not drift away from the
        # rest. Only rows of versions kept (`keep_for_replay`) enter it: a rejected update's rows come
        # back as new ones. It starts from the lineage's stored sample (`seed_replay`, modeling/replay.py).
        self._replay_capacity = max(0, replay_rows)
        self._replay: List[Tuple[Row, Labels]] = []
        self._replay_seen = 0
        self._replay_rng = random.Random(replay_rows)
        self._last: List[Tuple[Row, Labels]] = []
        self.replay_changes = 0  # rows kept since the sample was last seeded or taken (`replay_sample`)

    def restore(self, checkpoint_prefix: str) -> int:
        self.saver.restore(self.session, checkpoint_prefix)
        self.step = int(self.session.run(self.global_step))
        return self.step

    def save(self, directory: str) -> str:
        """Every variable (model, optimizer slots, global step) as checkpoint model.ckpt-<step>."""
        os.makedirs(directory, exist_ok=True)
        return self.saver.save(self.session, os.path.join(directory, "model.ckpt"), global_step=self.step,
                               write_meta_graph=False)

    def _feed(self, rows: Sequence[Row], values: Sequence[Labels]) -> Dict[Any, List[Any]]:
        feed: Dict[Any, List[Any]] = {}
        for position, name in enumerate(LABEL_COLUMNS):
            if name in self.inputs:
                feed[self.inputs[name]] = [v[position] for v in values]
        for name in self.spec.names:
            feed[self.inputs[name]] = [row[name] for row in rows]
        return feed

    @property
    def replayable(self) -> int:
        """Rows available for replay."""
        return len(self._replay)

    def train(self, examples: Sequence[Example], profiles: Profiles, steps: int, batch_size: int, seed: int,
              replay: int = 0) -> int:
        """`steps` optimizer steps over shuffled passes of the examples and `replay` rows drawn from the
        replay buffer; returns the global step."""
        if not examples:
            return self.step
        rng = random.Random(seed)
        fresh = [(encode(e, self.spec, profiles), e.label_values()) for e in examples]
        replayed = rng.sample(self._replay, min(replay, len(self._replay))) if replay > 0 else []
        pairs = fresh + replayed
        order = list(range(len(pairs)))
        rng.shuffle(order)
        position = 0
        for _ in range(steps):
            if position >= len(order):
                rng.shuffle(order)
                position = 0
            batch = [pairs[i] for i in order[position:position + batch_size]]
            position += batch_size
            self.session.run(self.train_op, self._feed([row for row, _ in batch], [labels for _, labels in batch]))
        if self._cap_accumulators:
            self.session.run(self._cap_accumulators)
        self.step = int(self.session.run(self.global_step))
        self._last = fresh
        return self.step

    def keep_for_replay(self) -> None:
        """The last `train` call's new rows belong to a kept version: they may be replayed from now on."""
        self.replay_changes += len(self._last)
        for pair in self._last:
            self._replay_seen += 1
            if len(self._replay) < self._replay_capacity:
                self._replay.append(pair)
            else:
                slot = self._replay_rng.randrange(self._replay_seen)
                if slot < self._replay_capacity:
                    self._replay[slot] = pair
        self._last = []

    def seed_replay(self, sample: ReplaySample) -> None:
        """Start the replay sample from a stored one (of this lineage: the same feature columns)."""
        rows = list(sample.rows)
        if len(rows) > self._replay_capacity:
            rows = self._replay_rng.sample(rows, self._replay_capacity)
        self._replay, self._replay_seen, self.replay_changes = rows, max(sample.seen, len(rows)), 0

    def replay_sample(self) -> ReplaySample:
        """The replay sample as it is, to be stored; resets `replay_changes`."""
        self.replay_changes = 0
        return ReplaySample(list(self._replay), self._replay_seen)

    def largest_accumulator(self) -> float:
        """The largest Adagrad accumulator value (0 for other optimizers)."""
        return float(self.session.run(self._largest_accumulator))

    def predict(self, examples: Sequence[Example], profiles: Profiles) -> List[float]:
        """The primary output for the examples with the session's current weights."""
        if not examples:
            return []
        rows = [encode(e, self.spec, profiles) for e in examples]
        feed = self._feed(rows, [e.label_values() for e in examples])
        return [float(p) for p in self.session.run(self.probs, feed)]

    def close(self) -> None:
        self.session.close()
