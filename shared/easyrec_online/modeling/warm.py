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
from typing import Any, Dict, List, Sequence

from ..features import CONVERSION_LABEL, LABEL, Example, FeatureSpec, Profiles, encode

logger = logging.getLogger(__name__)


class WarmTrainer:
    def __init__(self, pipeline_text: str, spec: FeatureSpec, workdir: str) -> None:
        import tensorflow as tf
        from easy_rec.python import main as easyrec_main
        from easy_rec.python.protos.dataset_pb2 import DatasetConfig
        from easy_rec.python.utils import config_util
        from tensorflow.python.autograph.core import ag_ctx

        self.spec = spec
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        path = os.path.join(workdir, "pipeline.config")
        with open(path, "w") as f:
            f.write(pipeline_text)
        config = config_util.get_configs_from_pipeline_file(path)
        types = {DatasetConfig.STRING: tf.string, DatasetConfig.FLOAT: tf.float32, DatasetConfig.DOUBLE: tf.float32}
        self.graph = tf.Graph()
        with self.graph.as_default(), ag_ctx.ControlStatusCtx(status=ag_ctx.Status.DISABLED):
            input_fn = easyrec_main._get_input_fn(config.data_config, config_util.get_compatible_feature_configs(config),
                                                  None, config.export_config)
            creator = input_fn.input_creator
            creator._mode = tf.estimator.ModeKeys.TRAIN
            self.inputs = {f.input_name: tf.placeholder(types[f.input_type], [None], name="warm_" + f.input_name)
                           for f in config.data_config.input_fields}
            parsed = creator._preprocess(dict(self.inputs))
            # The Estimator creates the global step before calling the model_fn; so do we.
            self.global_step = tf.train.get_or_create_global_step()
            estimator, run_config = easyrec_main._create_estimator(config)
            model = estimator._train_model_fn(parsed["feature"], creator._get_labels(parsed), run_config)
            self.train_op = model.train_op
            self.loss = model.loss
            predictions = model.predictions
            self.probs = predictions["probs"] if "probs" in predictions else predictions["probs_main"]
            self.saver = tf.train.Saver(max_to_keep=None)
            self._init = [tf.global_variables_initializer(), tf.local_variables_initializer(),
                          tf.tables_initializer()]
        session_config = tf.ConfigProto(intra_op_parallelism_threads=2, inter_op_parallelism_threads=2)
        self.session = tf.Session(graph=self.graph, config=session_config)
        self.session.run(self._init)
        self.step = 0

    def restore(self, checkpoint_prefix: str) -> int:
        self.saver.restore(self.session, checkpoint_prefix)
        self.step = int(self.session.run(self.global_step))
        return self.step

    def save(self, directory: str) -> str:
        """Every variable (model, optimizer slots, global step) as checkpoint model.ckpt-<step>."""
        os.makedirs(directory, exist_ok=True)
        return self.saver.save(self.session, os.path.join(directory, "model.ckpt"), global_step=self.step,
                               write_meta_graph=False)

    def _feed(self, rows: Sequence[Dict[str, Any]], examples: Sequence[Example]) -> Dict[Any, List[Any]]:
        feed: Dict[Any, List[Any]] = {self.inputs[LABEL]: [float(e.label) for e in examples]}
        if CONVERSION_LABEL in self.inputs:
            feed[self.inputs[CONVERSION_LABEL]] = [float(e.conversion) for e in examples]
        for name in self.spec.names:
            feed[self.inputs[name]] = [row[name] for row in rows]
        return feed

    def train(self, examples: Sequence[Example], profiles: Profiles, steps: int, batch_size: int, seed: int) -> int:
        """`steps` optimizer steps over shuffled passes of the examples; returns the global step."""
        import random

        if not examples:
            return self.step
        rows = [encode(e, self.spec, profiles) for e in examples]
        order = list(range(len(examples)))
        rng = random.Random(seed)
        rng.shuffle(order)
        position = 0
        for _ in range(steps):
            if position >= len(order):
                rng.shuffle(order)
                position = 0
            batch = order[position:position + batch_size]
            position += batch_size
            self.session.run(self.train_op, self._feed([rows[i] for i in batch], [examples[i] for i in batch]))
        self.step = int(self.session.run(self.global_step))
        return self.step

    def predict(self, examples: Sequence[Example], profiles: Profiles) -> List[float]:
        """The primary output for the examples with the session's current weights."""
        if not examples:
            return []
        rows = [encode(e, self.spec, profiles) for e in examples]
        feed = self._feed(rows, examples)
        return [float(p) for p in self.session.run(self.probs, feed)]

    def close(self) -> None:
        self.session.close()
