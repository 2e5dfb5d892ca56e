"""The one home of configuration.

Every setting has a documented default and an environment-variable override. template.yaml sets
the deployed values; the local runner passes the same variables to each function process. The
README's configuration table is generated from SETTINGS below (see `settings_table_markdown`).

This module runs in both runtimes (Python 3.7 model runtime, Python 3.12 control plane), so it
sticks to syntax and typing that 3.7 understands.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from typing import Any, Callable, Dict, List, Optional

from .labels import parse_rules


@dataclass(frozen=True)
class Setting:
    env: str
    default: Any
    doc: str
    parse: Callable[[str], Any] = str


def _bool(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _fraction(value: str) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError("must be between 0 and 1")
    return number


def _optional(value: str) -> Optional[str]:
    return value or None


SETTINGS: Dict[str, Setting] = {
    # --- where things live -------------------------------------------------------------
    "aws_region": Setting("AWS_REGION", "us-east-1", "AWS region for every client."),
    "aws_endpoint_url": Setting(
        "AWS_ENDPOINT_URL", None,
        "Endpoint for every AWS client (moto or LocalStack locally); unset on AWS.", _optional),
    "aws_endpoint_url_dynamodb": Setting(
        "AWS_ENDPOINT_URL_DYNAMODB", None,
        "Endpoint for DynamoDB alone (e.g. moto beside LocalStack, which cannot serve DynamoDB offline); "
        "default AWS_ENDPOINT_URL.", _optional),
    "data_bucket": Setting("DATA_BUCKET", "easyrec-online-data", "S3 bucket for stored actions and models."),
    "actions_prefix": Setting("ACTIONS_PREFIX", "actions/", "S3 prefix of stored actions (partitioned dt=YYYY-MM-DD)."),
    "models_prefix": Setting("MODELS_PREFIX", "models/", "S3 prefix of model versions (<lineage>/<version>/)."),
    "stream_transport": Setting(
        "STREAM_TRANSPORT", "sqs", "Where /online/data/add writes actions: sqs (default), kinesis or kafka."),
    "actions_stream_name": Setting(
        "ACTIONS_STREAM_NAME", "", "Kinesis data stream of actions (STREAM_TRANSPORT=kinesis)."),
    "kafka_bootstrap_servers": Setting(
        "KAFKA_BOOTSTRAP_SERVERS", "", "Kafka / MSK brokers, host:port,... (STREAM_TRANSPORT=kafka)."),
    "kafka_topic": Setting("KAFKA_TOPIC", "easyrec-actions", "Kafka topic of actions."),
    "kafka_security_protocol": Setting(
        "KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (MSK: SSL or SASL_SSL)."),
    "kafka_sasl_mechanism": Setting(
        "KAFKA_SASL_MECHANISM", "", "SASL mechanism with SASL_*: SCRAM-SHA-512 (MSK), SCRAM-SHA-256 or PLAIN."),
    "kafka_sasl_username": Setting("KAFKA_SASL_USERNAME", "", "SASL user name."),
    "kafka_sasl_password": Setting("KAFKA_SASL_PASSWORD", "", "SASL password (on AWS, inject it from Secrets Manager)."),
    "kafka_ssl_ca_location": Setting(
        "KAFKA_SSL_CA_LOCATION", "", "CA bundle for SSL (empty: the system's; MSK's certificates are public)."),
    "actions_queue_url": Setting("ACTIONS_QUEUE_URL", "", "SQS queue URL that /online/data/add writes to."),
    "actions_dlq_url": Setting(
        "ACTIONS_DLQ_URL", "", "Dead-letter queue of the actions queue (poison messages end there)."),
    "state_table": Setting("STATE_TABLE", "easyrec-online-state", "DynamoDB table: model registry and training jobs."),
    "profiles_table": Setting("PROFILES_TABLE", "easyrec-online-profiles", "DynamoDB table: user and item profiles."),
    # --- training task ------------------------------------------------------------------
    "training_cluster": Setting("TRAINING_CLUSTER", "easyrec-online", "ECS cluster that runs training tasks."),
    "training_task_definition": Setting(
        "TRAINING_TASK_DEFINITION", "easyrec-online-trainer", "ECS task definition (family or ARN) of the trainer."),
    "training_container": Setting("TRAINING_CONTAINER", "trainer", "Container name inside the trainer task."),
    "trainer_log_group": Setting(
        "TRAINER_LOG_GROUP", "", "CloudWatch Logs group of the trainer task (GET /online/training/logs reads it)."),
    "trainer_log_stream_prefix": Setting(
        "TRAINER_LOG_STREAM_PREFIX", "trainer", "awslogs stream prefix of the trainer task."),
    "training_subnets": Setting(
        "TRAINING_SUBNETS", "", "Comma-separated subnet ids for the Fargate trainer task."),
    "training_security_groups": Setting(
        "TRAINING_SECURITY_GROUPS", "", "Comma-separated security group ids for the trainer task."),
    "model_name": Setting(
        "MODEL_NAME", "deepfm",
        "EasyRec model to train: deepfm, wide_and_deep, dcn, autoint, dssm (two towers), mind (multi-interest, reads the user history) or mmoe (multi-task)."),
    "train_steps": Setting("TRAIN_STEPS", 200, "Training steps of a full training run.", int),
    "optimizer": Setting(
        "OPTIMIZER", "adagrad",
        "adagrad (sparse updates: cost per step independent of the id tables' size) or adam. A lineage keeps "
        "the optimizer it started with; a change starts a new lineage.", str),
    "learning_rate": Setting(
        "LEARNING_RATE", None, "Learning rate (default: 0.2 for adagrad, 0.01 for adam).",
        lambda v: float(v) if v else None),
    "id_hash_buckets": Setting(
        "ID_HASH_BUCKETS", 50000,
        "Hash buckets of the user and item id embeddings of a new lineage (more: fewer collisions, bigger "
        "model).", int),
    "train_batch_size": Setting("TRAIN_BATCH_SIZE", 128, "Training batch size.", int),
    "train_min_actions": Setting("TRAIN_MIN_ACTIONS", 1, "Fewest stored actions a training run accepts.", int),
    "negatives_per_positive": Setting(
        "NEGATIVES_PER_POSITIVE", 2,
        "Sampled negatives per positive action when the data holds too few explicit negatives.", int),
    "negative_sampling": Setting(
        "NEGATIVE_SAMPLING", "always",
        "always: sampled unseen items as negatives beside every positive, also when the data has explicit "
        "negatives (ratings), so the model learns liked-vs-unseen, what ranking candidates needs, not only "
        "liked-vs-disliked (MovieLens HR@10 of new users 0.55 against 0.29 with auto); auto: only when at "
        "least 80 % of the actions are positive; never."),
    "cold_start_rate": Setting(
        "COLD_START_RATE", 0.1,
        "Share of training examples also learnt as if from a new user (a copy without the user id) and, in a "
        "second draw, as if about a new item (without the item id), profiles kept: a lineage then scores users "
        "and items it never trained on from their profiles, the other side and the context. 0: such pairs get "
        "the item's popularity prior instead.", _fraction),
    "label_rules": Setting(
        "LABEL_RULES", None,
        "JSON action_type -> label rule, for samples sent without a label (default: labels.DEFAULT_LABEL_RULES, "
        "e.g. purchase -> 1, rating -> stars >= 4, view -> 0 if bounced).", parse_rules),
    "feature_min_support": Setting(
        "FEATURE_MIN_SUPPORT", 0.01,
        "A parameter or profile field becomes a feature of a new lineage when at least this fraction of "
        "its actions (or of their users/items) carries it.", float),
    "max_parameter_features": Setting(
        "MAX_PARAMETER_FEATURES", 20, "Most action-parameter features per lineage (the most frequent keys).", int),
    "max_profile_features": Setting(
        "MAX_PROFILE_FEATURES", 20, "Most profile-field features per lineage, for users and for items each.", int),
    "parameter_features_exclude": Setting(
        "PARAMETER_FEATURES_EXCLUDE", "",
        "Comma-separated dotted parameter keys never used as features (those read by label rules never are)."),
    "random_seed": Setting("RANDOM_SEED", 20261129, "Seed for negative sampling and holdout splits.", int),
    "incremental_epochs": Setting(
        "INCREMENTAL_EPOCHS", 3, "Passes over the new actions in an incremental update.", int),
    "incremental_min_steps": Setting(
        "INCREMENTAL_MIN_STEPS", 20, "Fewest training steps of an incremental update.", int),
    "train_keep_workdir": Setting(
        "TRAIN_KEEP_WORKDIR", False,
        "Keep a training task's working folder (CSV rows, pipeline.config, model_dir) for inspection.", _bool),
    "continuous_training": Setting(
        "CONTINUOUS_TRAINING", False,
        "Keep a continuous trainer running: the API starts one when actions arrive and none runs, and "
        "restarts a failed one as the restart policy allows (PATCH /online/training/restart-policy).", _bool),
    "immediate_action_types": Setting(
        "IMMEDIATE_ACTION_TYPES", "purchase,rating,add_to_cart,book_tickets",
        "Action types the continuous trainer learns from at once (an update starts as soon as one is stored)."),
    "batch_min_actions": Setting(
        "BATCH_MIN_ACTIONS", 100,
        "Other actions are learnt in batches: an update starts when this many are waiting ...", int),
    "batch_max_age_s": Setting(
        "BATCH_MAX_AGE_S", 60.0, "... or when the oldest waiting one was accepted this many seconds ago.", float),
    "continuous_poll_ms": Setting(
        "CONTINUOUS_POLL_MS", 500, "How often the continuous trainer looks for newly stored actions.", int),
    "auto_retrain_auc_threshold": Setting(
        "AUTO_RETRAIN_AUC_THRESHOLD", 0.55,
        "An automatic update becomes a full retrain (new lineage) when the current version's AUC on "
        "the fresh actions' holdout is below this.", float),
    "promotion_auc_tolerance": Setting(
        "PROMOTION_AUC_TOLERANCE", 0.02,
        "A new version becomes current unless its holdout AUC is worse than the current version's "
        "on the same holdout by more than this.", float),
    # --- serving ------------------------------------------------------------------------
    "model_cache_dir": Setting(
        "MODEL_CACHE_DIR", "/tmp/easyrec-online/models", "Local disk copy of downloaded model versions."),
    "current_check_interval_ms": Setting(
        "CURRENT_CHECK_INTERVAL_MS", 1000, "How often inference re-reads the current-version pointer.", int),
    "profile_cache_ttl_s": Setting(
        "PROFILE_CACHE_TTL_S", 60.0,
        "How long inference and the continuous trainer's updates cache user/item profiles; a profile PUT "
        "reaches scoring and training within this.", float),
    "catalog_candidates": Setting(
        "CATALOG_CANDIDATES", 200,
        "Candidates /recommend draws from the catalog when the request names none (popular, trending and, "
        "for two-tower models, embedding retrieval).", int),
    "trending_half_life_hours": Setting(
        "TRENDING_HALF_LIFE_HOURS", 24.0, "Half-life of an action's weight in an item's trending score.", float),
    "exclude_acted_action_types": Setting(
        "EXCLUDE_ACTED_ACTION_TYPES", "purchase,book_tickets,rating,like,super_like,dislike",
        "Action types that make an item 'already acted on' for /recommend's exclude_acted_on filter "
        "(empty: any action)."),
    "item_category_field": Setting(
        "ITEM_CATEGORY_FIELD", "category",
        "Item profile field /recommend's category filter matches (a string or a list of strings)."),
    "max_candidates": Setting("MAX_CANDIDATES", 1000, "Most candidate_items one /recommend may carry.", int),
    "max_top_k": Setting("MAX_TOP_K", 1000, "Largest top_k accepted by /recommend.", int),
    "max_samples_per_request": Setting(
        "MAX_SAMPLES_PER_REQUEST", 500, "Most samples one /online/data/add may carry.", int),
    # --- service ------------------------------------------------------------------------
    "api_version": Setting("API_VERSION", "1.1.0", "API contract version reported by /health."),
    "log_level": Setting("POWERTOOLS_LOG_LEVEL", "INFO", "Log level of every function."),
}


@dataclass(frozen=True)
class Settings:
    aws_region: str
    aws_endpoint_url: Optional[str]
    aws_endpoint_url_dynamodb: Optional[str]
    data_bucket: str
    actions_prefix: str
    models_prefix: str
    stream_transport: str
    actions_stream_name: str
    kafka_bootstrap_servers: str
    kafka_topic: str
    kafka_security_protocol: str
    kafka_sasl_mechanism: str
    kafka_sasl_username: str
    kafka_sasl_password: str
    kafka_ssl_ca_location: str
    actions_queue_url: str
    actions_dlq_url: str
    state_table: str
    profiles_table: str
    training_cluster: str
    training_task_definition: str
    training_container: str
    trainer_log_group: str
    trainer_log_stream_prefix: str
    training_subnets: str
    training_security_groups: str
    model_name: str
    train_steps: int
    optimizer: str
    learning_rate: Optional[float]
    id_hash_buckets: int
    train_batch_size: int
    train_min_actions: int
    negatives_per_positive: int
    negative_sampling: str
    cold_start_rate: float
    label_rules: Optional[Dict[str, Any]]
    feature_min_support: float
    max_parameter_features: int
    max_profile_features: int
    parameter_features_exclude: str
    random_seed: int
    incremental_epochs: int
    incremental_min_steps: int
    train_keep_workdir: bool
    continuous_training: bool
    immediate_action_types: str
    batch_min_actions: int
    batch_max_age_s: float
    continuous_poll_ms: int
    auto_retrain_auc_threshold: float
    promotion_auc_tolerance: float
    model_cache_dir: str
    current_check_interval_ms: int
    profile_cache_ttl_s: float
    catalog_candidates: int
    trending_half_life_hours: float
    exclude_acted_action_types: str
    item_category_field: str
    max_candidates: int
    max_top_k: int
    max_samples_per_request: int
    api_version: str
    log_level: str

    @classmethod
    def from_env(cls, environ: Optional[Dict[str, str]] = None, **overrides: Any) -> "Settings":
        env = os.environ if environ is None else environ
        values: Dict[str, Any] = {}
        for field in fields(cls):
            setting = SETTINGS[field.name]
            raw = env.get(setting.env)
            if raw is None or raw == "":
                values[field.name] = setting.default
            else:
                try:
                    values[field.name] = setting.parse(raw)
                except ValueError as exc:
                    raise ValueError("invalid value for {}: {!r} ({})".format(setting.env, raw, exc))
        values.update(overrides)
        return cls(**values)

    def as_env(self) -> Dict[str, str]:
        """The settings as environment variables (for launching a process with the same configuration)."""
        out = {}
        for name, setting in SETTINGS.items():
            value = getattr(self, name)
            if value is not None:
                out[setting.env] = json.dumps(value) if isinstance(value, dict) else str(value)
        return out

    @property
    def effective_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        # Measured (bench/models, MovieLens DeepFM, 300 x 128): Adagrad 0.1 -> AUC 0.740, 0.2 -> 0.749,
        # 0.3 -> 0.730; on the synthetic parity data 0.76 / 0.87 / 0.95 (Adam 0.01: 0.740 and 0.92).
        return 0.01 if self.optimizer == "adam" else 0.2

    @property
    def immediate_types(self) -> List[str]:
        return [s.strip() for s in self.immediate_action_types.split(",") if s.strip()]

    @property
    def excluded_parameters(self) -> List[str]:
        return [s.strip() for s in self.parameter_features_exclude.split(",") if s.strip()]

    @property
    def acted_action_types(self) -> Optional[List[str]]:
        """None: every action type counts as acted on."""
        types = [s.strip() for s in self.exclude_acted_action_types.split(",") if s.strip()]
        return types or None

    @property
    def subnet_ids(self) -> List[str]:
        return [s for s in self.training_subnets.split(",") if s]

    @property
    def security_group_ids(self) -> List[str]:
        return [s for s in self.training_security_groups.split(",") if s]


def settings_table_markdown() -> str:
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for setting in SETTINGS.values():
        default = "(unset)" if setting.default is None else "`{}`".format(setting.default)
        rows.append("| `{}` | {} | {} |".format(setting.env, default, setting.doc))
    return "\n".join(rows)
