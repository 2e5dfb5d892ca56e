"""The one place that drives EasyRec's internals (model runtime: TensorFlow 1.15 + pai-easy-rec).

EasyRec's CLI (train_eval) starts a new process and rebuilds everything per call; the service
trains in-process (cold task) and keeps a training graph alive between updates (warm trainer).
Both need functions EasyRec does not export as a public API (`_train_and_evaluate_impl`,
`_get_input_fn`, `_create_estimator`, the estimator's `_train_model_fn`, the input creator's
`_preprocess` and `_get_labels`). They are used here only, against the pinned version below:
`check_pinned()` refuses another version, and a test fails loudly when the pin or these
functions change (tests/integration/test_model_runtime.py).
"""
from __future__ import annotations

import os
from typing import Any, Dict, NamedTuple

from easyrec_online.artifacts.scorer import primary_output

# The version this adapter is written against (infra/model-runtime/requirements.txt pins it too).
EASYREC_VERSION = "0.7.1"
# The private functions the adapter calls, by (module, attribute path): checked by the pin test.
PRIVATE_API = (
    ("easy_rec.python.main", "_train_and_evaluate_impl"),
    ("easy_rec.python.main", "_get_input_fn"),
    ("easy_rec.python.main", "_create_estimator"),
    ("easy_rec.python.model.easy_rec_estimator", "EasyRecEstimator._train_model_fn"),
    ("easy_rec.python.input.input", "Input._preprocess"),
    ("easy_rec.python.input.input", "Input._get_labels"),
)


class EasyRecVersionError(RuntimeError):
    pass


def installed_version() -> str:
    import easy_rec

    return str(easy_rec.__version__)


def check_pinned() -> None:
    """Refuse an EasyRec other than the one the private calls below were written against."""
    found = installed_version()
    if found != EASYREC_VERSION:
        raise EasyRecVersionError(
            "modeling/easyrec.py drives EasyRec {} internals, but {} is installed: re-check every function in "
            "PRIVATE_API against the new version, then move EASYREC_VERSION".format(EASYREC_VERSION, found))


def _no_autograph() -> Any:
    # TF 1.15 AutoGraph-converts EasyRec's tf.data parsing functions on every input_fn call (about
    # 5 s each for train and eval, measured); they are plain graph code, so build them unconverted
    # (bit-identical metrics, measured).
    from tensorflow.python.autograph.core import ag_ctx

    return ag_ctx.ControlStatusCtx(status=ag_ctx.Status.DISABLED)


def load_pipeline_config(pipeline_text: str, workdir: str) -> Any:
    from easy_rec.python.utils import config_util

    path = os.path.join(workdir, "pipeline.config")
    with open(path, "w") as f:
        f.write(pipeline_text)
    return config_util.get_configs_from_pipeline_file(path)


def train_evaluate_export(pipeline_text: str, workdir: str, continue_train: bool, seed: int) -> str:
    """Train, evaluate and export with EasyRec in this process (what train_eval does, minus the new
    process); returns the model_dir the pipeline config names. `seed`: the graph's random seed (the
    initial weights; EasyRec's input shuffle has its own), so that one configuration trains the same
    model on the same rows every time (EasyRec leaves RunConfig.tf_random_seed unset)."""
    from easy_rec.python import main as easyrec_main

    check_pinned()
    config = load_pipeline_config(pipeline_text, workdir)
    create_estimator = easyrec_main._create_estimator

    def seeded(*args: Any, **kwargs: Any) -> Any:
        estimator, _ = create_estimator(*args, **kwargs)
        estimator._config = estimator.config.replace(tf_random_seed=seed)
        return estimator, estimator.config

    easyrec_main._create_estimator = seeded
    try:
        with _no_autograph():
            easyrec_main._train_and_evaluate_impl(config, continue_train=continue_train)
    finally:
        easyrec_main._create_estimator = create_estimator
    return str(config.model_dir)


class TrainingGraph(NamedTuple):
    inputs: Dict[str, Any]  # input field name -> placeholder
    global_step: Any
    train_op: Any
    loss: Any
    probs: Any  # the primary output's probabilities (float64, from its logits where the model has them)


def build_training_graph(pipeline_text: str, workdir: str) -> TrainingGraph:
    """EasyRec's own training graph for a pipeline config, in the current default graph, fed through
    one placeholder per input field instead of its tf.data pipeline: the same preprocessing, model
    and optimizer as its estimator builds (so checkpoints are interchangeable with train_eval's)."""
    import tensorflow as tf
    from easy_rec.python import main as easyrec_main
    from easy_rec.python.protos.dataset_pb2 import DatasetConfig
    from easy_rec.python.utils import config_util

    check_pinned()
    config = load_pipeline_config(pipeline_text, workdir)
    types = {DatasetConfig.STRING: tf.string, DatasetConfig.FLOAT: tf.float32, DatasetConfig.DOUBLE: tf.float32}
    with _no_autograph():
        input_fn = easyrec_main._get_input_fn(config.data_config, config_util.get_compatible_feature_configs(config),
                                              None, config.export_config)
        creator = input_fn.input_creator
        creator._mode = tf.estimator.ModeKeys.TRAIN
        inputs = {f.input_name: tf.placeholder(types[f.input_type], [None], name="warm_" + f.input_name)
                  for f in config.data_config.input_fields}
        parsed = creator._preprocess(dict(inputs))
        # The Estimator creates the global step before calling the model_fn; so do we.
        global_step = tf.train.get_or_create_global_step()
        estimator, run_config = easyrec_main._create_estimator(config)
        model = estimator._train_model_fn(parsed["feature"], creator._get_labels(parsed), run_config)
    predictions = model.predictions
    output, is_logit = primary_output(predictions)
    probs = tf.sigmoid(tf.cast(predictions[output], tf.float64)) if is_logit else predictions[output]
    return TrainingGraph(inputs, global_step, model.train_op, model.loss, probs)
