"""The one home of configuration: every setting is declared once, as a field of `Settings`.

A declaration gives the typed field, its default, its environment variable and its doc line;
`Settings.from_env` reads the environment (parsing by the field's type), `as_env` writes it back,
and the README's configuration table is generated from the same fields (`settings_table_markdown`,
`make readme`; a test keeps the README in step). template.yaml sets the deployed values; the local
runner passes the same variables to each function process.

This module runs in both runtimes (Python 3.7 model runtime, Python 3.12 control plane), so it
sticks to syntax and typing that 3.7 understands.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Dict, List, Mapping, Optional


def _bool(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _fraction(value: str) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError("must be between 0 and 1")
    return number


def _item_similarity(value: str) -> str:
    value = value.strip().lower()
    if value not in ("auto", "ease", "cosine"):
        raise ValueError("must be auto, ease or cosine")
    return value


def _non_negative(value: str) -> float:
    number = float(value)
    if not number >= 0.0:
        raise ValueError("must be 0 or more")
    return number


def _optional(value: str) -> Optional[str]:
    return value or None


def _optional_float(value: str) -> Optional[float]:
    return float(value) if value else None


def _json_object(value: str) -> Optional[Dict[str, Any]]:
    if not value:
        return None
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise ValueError("not JSON: {}".format(exc))
    if not isinstance(parsed, dict):
        raise ValueError("must be a JSON object")
    return parsed


# A field's parser by its annotation (the annotations are strings: `from __future__ import annotations`).
_PARSERS: Dict[str, Callable[[str], Any]] = {
    "str": str, "int": int, "float": float, "bool": _bool, "Optional[str]": _optional,
    "Optional[float]": _optional_float, "Optional[Dict[str, Any]]": _json_object,
}


# The models MODEL_NAME may name (modeling/pipeline.py builds each; a test keeps the two equal). Here, so
# that the control plane can check a name without importing the model plane.
MODEL_NAMES = ("deepfm", "wide_and_deep", "dcn", "autoint", "mmoe", "dssm", "mind")


def setting(env: str, default: Any, doc: str, parse: Optional[Callable[[str], Any]] = None) -> Any:
    """Declare a setting: its environment variable, default and doc line (and a parser, when the
    field's type does not say how to read it)."""
    return field(default=default, metadata={"env": env, "doc": doc, "parse": parse})


@dataclass(frozen=True)
class Settings:
    # --- where things live -------------------------------------------------------------------------
    aws_region: str = setting("AWS_REGION", "us-east-1", "AWS region for every client.")
    aws_endpoint_url: Optional[str] = setting(
        "AWS_ENDPOINT_URL", None,
        "Endpoint for every AWS client (moto or LocalStack locally); unset on AWS.")
    aws_endpoint_url_dynamodb: Optional[str] = setting(
        "AWS_ENDPOINT_URL_DYNAMODB", None,
        "Endpoint for DynamoDB alone (e.g. moto beside LocalStack, which cannot serve DynamoDB offline); default "
        "AWS_ENDPOINT_URL.")
    data_bucket: str = setting("DATA_BUCKET", "easyrec-online-data", "S3 bucket for stored actions and models.")
    actions_prefix: str = setting(
        "ACTIONS_PREFIX", "actions/",
        "S3 prefix of stored actions (partitioned dt=YYYY-MM-DD).")
    models_prefix: str = setting("MODELS_PREFIX", "models/", "S3 prefix of model versions (<lineage>/<version>/).")
    stream_transport: str = setting(
        "STREAM_TRANSPORT", "sqs",
        "Where /online/data/add writes actions: sqs (default), kinesis or kafka.")
    actions_stream_name: str = setting(
        "ACTIONS_STREAM_NAME", "",
        "Kinesis data stream of actions (STREAM_TRANSPORT=kinesis).")
    kafka_bootstrap_servers: str = setting(
        "KAFKA_BOOTSTRAP_SERVERS", "",
        "Kafka / MSK brokers, host:port,... (STREAM_TRANSPORT=kafka).")
    kafka_topic: str = setting("KAFKA_TOPIC", "easyrec-actions", "Kafka topic of actions.")
    kafka_security_protocol: str = setting(
        "KAFKA_SECURITY_PROTOCOL", "PLAINTEXT",
        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (MSK: SSL or SASL_SSL).")
    kafka_sasl_mechanism: str = setting(
        "KAFKA_SASL_MECHANISM", "",
        "SASL mechanism with SASL_*: SCRAM-SHA-512 (MSK), SCRAM-SHA-256 or PLAIN.")
    kafka_sasl_username: str = setting("KAFKA_SASL_USERNAME", "", "SASL user name.")
    kafka_sasl_password: str = setting(
        "KAFKA_SASL_PASSWORD", "",
        "SASL password (on AWS, inject it from Secrets Manager).")
    kafka_ssl_ca_location: str = setting(
        "KAFKA_SSL_CA_LOCATION", "",
        "CA bundle for SSL (empty: the system's; MSK's certificates are public).")
    actions_queue_url: str = setting("ACTIONS_QUEUE_URL", "", "SQS queue URL that /online/data/add writes to.")
    actions_dlq_url: str = setting(
        "ACTIONS_DLQ_URL", "",
        "Dead-letter queue of the actions queue (poison messages end there).")
    state_table: str = setting(
        "STATE_TABLE", "easyrec-online-state",
        "DynamoDB table: model registry and training jobs.")
    activity_table: str = setting(
        "ACTIVITY_TABLE", "easyrec-online-activity",
        "DynamoDB table: users' recent actions (the live features' user side), written on accept.")
    experiments_table: str = setting(
        "EXPERIMENTS_TABLE", "easyrec-online-experiments",
        "DynamoDB table: the experiments' log (impressions served under an experiment, and the successes that "
        "followed). Experiment definitions live in STATE_TABLE.")
    ledger_table: str = setting(
        "LEDGER_TABLE", "easyrec-online-ledger",
        "DynamoDB table: the event ledger (which stored object owns each event id: each event stored once).")
    ledger_ttl_days: float = setting(
        "LEDGER_TTL_DAYS", 21.0,
        "How long the ledger remembers an event id (longer than any stream keeps a record: SQS 14 days).")
    profiles_table: str = setting(
        "PROFILES_TABLE", "easyrec-online-profiles",
        "DynamoDB table: user and item profiles.")
    # --- training task -----------------------------------------------------------------------------
    training_cluster: str = setting("TRAINING_CLUSTER", "easyrec-online", "ECS cluster that runs training tasks.")
    training_task_definition: str = setting(
        "TRAINING_TASK_DEFINITION", "easyrec-online-trainer",
        "ECS task definition (family or ARN) of the trainer.")
    training_container: str = setting("TRAINING_CONTAINER", "trainer", "Container name inside the trainer task.")
    trainer_log_group: str = setting(
        "TRAINER_LOG_GROUP", "",
        "CloudWatch Logs group of the trainer task (GET /online/training/logs reads it).")
    trainer_log_stream_prefix: str = setting(
        "TRAINER_LOG_STREAM_PREFIX", "trainer",
        "awslogs stream prefix of the trainer task.")
    training_subnets: str = setting("TRAINING_SUBNETS", "", "Comma-separated subnet ids for the Fargate trainer task.")
    training_security_groups: str = setting(
        "TRAINING_SECURITY_GROUPS", "",
        "Comma-separated security group ids for the trainer task.")
    training_assign_public_ip: str = setting(
        "TRAINING_ASSIGN_PUBLIC_IP", "DISABLED",
        "ENABLED gives the Fargate trainer task a public IP (subnets without NAT or VPC endpoints); default none.")
    model_name: str = setting(
        "MODEL_NAME", "deepfm",
        "EasyRec model to train: deepfm, wide_and_deep, dcn, autoint, dssm (two towers), mind (multi-interest, "
        "reads the user history) or mmoe (multi-task).")
    train_steps: int = setting("TRAIN_STEPS", 200, "Training steps of a full training run.")
    optimizer: Optional[str] = setting(
        "OPTIMIZER", None,
        "adagrad (sparse updates: cost per step independent of the id tables' size) or adam. Default: adam for "
        "autoint (with Adagrad its attention layers did not learn the test suite's preferences in 400 steps, AUC "
        "0.46-0.53; Adam: 1.0), adagrad for the others. A lineage keeps the optimizer it started with; a change "
        "starts a new lineage.")
    adagrad_accumulator_cap: float = setting(
        "ADAGRAD_ACCUMULATOR_CAP", 1.0,
        "Warm updates cap Adagrad's accumulators at this (0: no cap), so step sizes never fall below "
        "learning_rate / sqrt(cap) and a trainer running for weeks keeps learning from new actions (after a "
        "1,000-step MovieLens training their 99th percentiles are 0.10-0.23, the largest 1.7).")
    learning_rate: Optional[float] = setting(
        "LEARNING_RATE", None,
        "Learning rate (default: 0.2 for adagrad, 0.01 for adam).")
    id_hash_buckets: int = setting(
        "ID_HASH_BUCKETS", 50000,
        "Hash buckets of the user and item id embeddings of a new lineage (more: fewer collisions, bigger model).")
    train_batch_size: int = setting("TRAIN_BATCH_SIZE", 128, "Training batch size.")
    train_min_actions: int = setting("TRAIN_MIN_ACTIONS", 1, "Fewest stored actions a training run accepts.")
    negatives_per_positive: int = setting(
        "NEGATIVES_PER_POSITIVE", 2,
        "Sampled negatives per positive action when the data holds too few explicit negatives.")
    negative_sampling: str = setting(
        "NEGATIVE_SAMPLING", "always",
        "always: sampled unseen items as negatives beside every positive, also when the data has explicit "
        "negatives (ratings), so the model learns liked-vs-unseen, what ranking candidates needs, not only "
        "liked-vs-disliked (MovieLens HR@10 of new users 0.55 against 0.29 with auto); auto: only when at least 80 % of "
        "the actions are positive; never.")
    live_features: bool = setting(
        "LIVE_FEATURES", True,
        "A new lineage also reads live features (artifacts/features/live.py): each item's popularity, positive "
        "rate and trend, the user's recent activity, and item-to-item CF scores against what the user did "
        "lately, read at serving time from the user's live activity, so a new action changes the next ranking "
        "before any weight update.")
    item_similarity: str = setting(
        "ITEM_SIMILARITY", "cosine",
        "The item-to-item similarities behind the live CF features and the 'similar' candidates: cosine "
        "(co-likes with shrinkage; any catalog size), ease (Steck's EASE weights; a dense inverse over the "
        "items) or auto (ease up to 4,000 items, cosine beyond). Alone, EASE's ranks better (MovieLens "
        "streaming HR@10 0.218 against 0.200), but the model trained on it measured mixed, within the noise of "
        "150 rankings (online streaming HR@10 0.073 against 0.087, NDCG@10 0.053 against 0.037; day-level "
        "HR@10 0.047 against 0.041), and EASE costs a dense inverse per version: cosine is the default.", parse=_item_similarity)
    cf_blend_max: float = setting(
        "CF_BLEND_MAX", 4.0,
        "Every score served (and judged by the promotion gate) is sigmoid(logit(model probability) + w * "
        "cf_pos / std(cf_pos)): the live item-to-item CF score kept in every ranking (artifacts/blend.py). The "
        "trainer fits w per version, up to this: a full training for the best full ranking of holdout users' "
        "liked items among the catalog (NDCG@10), keeping the global holdout AUC within 0.01 of the model's "
        "own (updates keep their parent's w, or refit on rated pairs with 1,000 holdout rows or more); 0 "
        "serves the model's probability alone. MovieLens streaming replay, 150 rankings, online HR@10 / "
        "NDCG@10: 0.087 / 0.038 without, 0.160 / 0.078 with w fixed at 2, 0.180 / 0.080 fitted in full "
        "ranking (w = 4; EASE 0.133 / 0.061).", parse=_non_negative)
    self_blend: float = setting(
        "SELF_BLEND", 1.0,
        "Weight, in logits, of the user's own recent actions on an item in its served score (artifacts/blend.py: "
        "+1 per positive action, -1 per other one, each decayed by 0.9 per later action of the user): what a "
        "user just did with an item counts at once, for items and users no version has seen too, and newer "
        "actions outweigh older, contradicting ones. Recorded in each version (the promotion gate judges the same "
        "scores); 0: none.", parse=_non_negative)
    negative_sampling_power: float = setting(
        "NEGATIVE_SAMPLING_POWER", 0.75,
        "Sampled negatives are drawn in proportion to (item's actions + 1) ** this: 0 uniform, 0.75 by popularity "
        "(then a model cannot rank by popularity alone; MovieLens streaming replay, linear model over the live "
        "features: NDCG@10 0.100 against 0.084 uniform).")
    repeat_actions_max: int = setting(
        "REPEAT_ACTIONS_MAX", 3,
        "Training rows, and counts in the item's popularity, positive rate and trend (the catalog), that one "
        "user's repeated actions on one item (with one label) within one hour give; the rest still count in the "
        "user's own live features, and repeats spread over hours or days all count. 0: no limit. Forty purchases "
        "of one item by one user in a burst are one user's preference: as forty rows they outweighed the thirty "
        "users who had rated it low, and one update put it near 1.0 for every user; as forty counts they made it "
        "look more popular than the item those thirty users liked.")
    cold_start_rate: float = setting(
        "COLD_START_RATE", 0.1,
        "Share of training examples also learnt as if from a new user (a copy without the user id) and, in a "
        "second draw, as if about a new item (without the item id), profiles kept: a lineage then scores users "
        "and items it never trained on from their profiles, the other side and the context. 0: such pairs get the "
        "item's popularity prior instead.", parse=_fraction)
    label_rules: Optional[Dict[str, Any]] = setting(
        "LABEL_RULES", None,
        "JSON action_type -> label rule, for samples sent without a label (default: labels.DEFAULT_LABEL_RULES, "
        "e.g. purchase -> 1, rating -> stars >= 4, view -> 0 if bounced).", parse=_json_object)
    feature_min_support: float = setting(
        "FEATURE_MIN_SUPPORT", 0.01,
        "A parameter or profile field becomes a feature of a new lineage when at least this fraction of its "
        "actions (or of their users/items) carries it.")
    max_parameter_features: int = setting(
        "MAX_PARAMETER_FEATURES", 20,
        "Most action-parameter features per lineage (the most frequent keys).")
    max_profile_features: int = setting(
        "MAX_PROFILE_FEATURES", 20,
        "Most profile-field features per lineage, for users and for items each.")
    parameter_features_exclude: str = setting(
        "PARAMETER_FEATURES_EXCLUDE", "",
        "Comma-separated dotted parameter keys never used as features (those read by label rules never are).")
    random_seed: int = setting("RANDOM_SEED", 20261129, "Seed for negative sampling and holdout splits.")
    incremental_epochs: int = setting(
        "INCREMENTAL_EPOCHS", 2,
        "Passes over an incremental update's rows (its new rows and the replayed ones), as many as a full "
        "training makes over its data (TRAIN_STEPS x batch / rows, about 2 on MovieLens): each row is learnt "
        "about as often as in a full training, and a small update does not fit its own few rows.")
    incremental_min_steps: int = setting(
        "INCREMENTAL_MIN_STEPS", 1,
        "Fewest training steps of an incremental update. More than a pass over a small update's rows overfits "
        "them: 20 steps over ~150 rows an update, 195 updates in a row, took the MovieLens streaming HR@10 from "
        "the first version's level to 0.033, below popularity's 0.080.")
    incremental_replay: float = setting(
        "INCREMENTAL_REPLAY", 1.0,
        "Rows replayed per new row in an incremental update, drawn from a uniform sample of every row the "
        "trainer's lineage trained on (REPLAY_BUFFER_ROWS): an update then learns the new actions without "
        "forgetting the rest (experience replay). 0: new rows only.")
    replay_buffer_rows: int = setting(
        "REPLAY_BUFFER_ROWS", 20000,
        "Rows the continuous trainer keeps in memory for replay (about 1 KB each): a uniform sample (reservoir "
        "sampling) of all it trained on, not the latest rows only (MovieLens day-level NDCG@10 0.031 against "
        "0.021 with the latest 20,000).")
    train_keep_workdir: bool = setting(
        "TRAIN_KEEP_WORKDIR", False,
        "Keep a training task's working folder (CSV rows, pipeline.config, model_dir) for inspection.")
    continuous_training: bool = setting(
        "CONTINUOUS_TRAINING", True,
        "Learn by default: keep a continuous trainer running. The supervisor (API calls, a schedule, task-stop "
        "events) starts one when none runs, resumes one that ended without a stop request, and restarts a failed "
        "one as the restart policy allows (PATCH /online/training/restart-policy). false: training runs only when "
        "started (POST /online/training/start).")
    immediate_action_types: str = setting(
        "IMMEDIATE_ACTION_TYPES", "purchase,rating,add_to_cart,book_tickets",
        "Action types the continuous trainer learns from at once (an update starts as soon as one is stored).")
    batch_min_actions: int = setting(
        "BATCH_MIN_ACTIONS", 100,
        "Other actions are learnt in batches: an update starts when this many are waiting ...")
    batch_max_age_s: float = setting(
        "BATCH_MAX_AGE_S", 60.0,
        "... or when the oldest waiting one was accepted this many seconds ago.")
    continuous_poll_ms: int = setting(
        "CONTINUOUS_POLL_MS", 500,
        "How often the continuous trainer looks for newly stored actions.")
    auto_retrain_auc_threshold: float = setting(
        "AUTO_RETRAIN_AUC_THRESHOLD", 0.55,
        "Drift: a full retraining (new lineage) starts when the current version's AUC on fresh actions (the "
        "holdouts it had not trained when it scored them; the continuous trainer's last 1,000 such rows) is below "
        "this.")
    lineage_growth_factor: float = setting(
        "LINEAGE_GROWTH_FACTOR", 4.0,
        "The continuous trainer starts a new lineage (a full retraining, judged by the gate like any version) "
        "when the current lineage has trained on this many times the actions it began with ... (0: never for "
        "growth; new fields that would become features, drift and {\"mode\": \"full\"} still start one).",
        parse=_non_negative)
    lineage_growth_min_actions: int = setting(
        "LINEAGE_GROWTH_MIN_ACTIONS", 200,
        "... and on at least this many more: a lineage born on 3 actions is not retrained at 12.")
    retrain_every_h: float = setting(
        "RETRAIN_EVERY_H", 0.0,
        "Also start a new lineage when the current one began this many hours ago (0: no schedule).",
        parse=_non_negative)
    promotion_auc_tolerance: float = setting(
        "PROMOTION_AUC_TOLERANCE", 0.02,
        "A new version becomes current unless its holdout AUC is worse than the current version's on the same "
        "holdout by more than this, plus two standard errors of the paired difference (a negative value demands "
        "a gain).")
    keep_versions: int = setting(
        "KEEP_VERSIONS", 20,
        "Model versions kept servable (rollback targets); older ones, except the current one, expire: their "
        "objects are tagged for the bucket's lifecycle rule, which deletes them a day later (the local runner "
        "plays that rule a minute after tagging).")
    # --- serving -----------------------------------------------------------------------------------
    model_cache_dir: str = setting(
        "MODEL_CACHE_DIR", "/tmp/easyrec-online/models",
        "Local disk copy of downloaded model versions.")
    current_check_interval_ms: int = setting(
        "CURRENT_CHECK_INTERVAL_MS", 1000,
        "How often inference re-reads the current-version pointer.")
    activity_cache_ttl_ms: int = setting(
        "ACTIVITY_CACHE_TTL_MS", 200,
        "How long inference caches a user's recent activity (a burst of requests for one user reads it once); "
        "an accepted action reaches that user's next ranking within this.")
    activity_ttl_days: float = setting(
        "ACTIVITY_TTL_DAYS", 30.0, "How long a user's actions stay in the live activity table (its TTL).")
    profile_cache_ttl_s: float = setting(
        "PROFILE_CACHE_TTL_S", 60.0,
        "How long inference and the continuous trainer's updates cache user/item profiles; a profile PUT reaches "
        "scoring and training within this.")
    catalog_candidates: int = setting(
        "CATALOG_CANDIDATES", 200,
        "Candidates /recommend draws from the catalog when the request names none (popular, trending and, for "
        "two-tower models, embedding retrieval).")
    trending_half_life_hours: float = setting(
        "TRENDING_HALF_LIFE_HOURS", 24.0,
        "Half-life of an action's weight in an item's trending score.")
    exclude_acted_action_types: str = setting(
        "EXCLUDE_ACTED_ACTION_TYPES", "purchase,book_tickets,rating,like,super_like,dislike",
        "Action types that make an item 'already acted on' for /recommend's exclude_acted_on filter (empty: any "
        "action).")
    item_category_field: str = setting(
        "ITEM_CATEGORY_FIELD", "category",
        "Item profile field /recommend's category filter matches (a string or a list of strings).")
    max_candidates: int = setting("MAX_CANDIDATES", 1000, "Most candidate_items one /recommend may carry.")
    max_top_k: int = setting("MAX_TOP_K", 1000, "Largest top_k accepted by /recommend.")
    experiment_max_loaded_versions: int = setting(
        "EXPERIMENT_MAX_LOADED_VERSIONS", 4,
        "Most model versions running experiments' arms may keep loaded in inference beside the current one "
        "(each 'version' arm and each followed 'lineage' counts once); creating one more is a 409.")
    experiment_refresh_ms: int = setting(
        "EXPERIMENT_REFRESH_MS", 2000,
        "How often inference and the ingest consumer re-read the running experiments (a new or stopped "
        "experiment serves, or stops serving, within this).")
    max_samples_per_request: int = setting(
        "MAX_SAMPLES_PER_REQUEST", 500,
        "Most samples one /online/data/add may carry.")
    api_keys: str = setting(
        "API_KEYS", "",
        "Local run: comma-separated client keys (x-api-key: ingest, recommend/predict, profiles). Without any "
        "key the local run is open and binds loopback only. Deployed: API Gateway's usage-plan keys.")
    admin_api_keys: str = setting(
        "ADMIN_API_KEYS", "",
        "Local run: comma-separated admin keys (every route: training control, rollback, export, operations). "
        "Deployed: admin routes take IAM (SigV4) credentials.")
    # --- service -----------------------------------------------------------------------------------
    api_version: str = setting("API_VERSION", "1.1.0", "API contract version reported by /health.")
    log_level: str = setting("POWERTOOLS_LOG_LEVEL", "INFO", "Log level of every function.")

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None, **overrides: Any) -> "Settings":
        env = os.environ if environ is None else environ
        values: Dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f.metadata["env"])
            if raw is None or raw == "":
                continue  # the declared default
            parse = f.metadata["parse"] or _PARSERS[str(f.type)]
            try:
                values[f.name] = parse(raw)
            except ValueError as exc:
                raise ValueError("invalid value for {}: {!r} ({})".format(f.metadata["env"], raw, exc))
        values.update(overrides)
        return cls(**values)

    def as_env(self) -> Dict[str, str]:
        """The settings as environment variables (for launching a process with the same configuration)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.metadata["env"]] = json.dumps(value) if isinstance(value, dict) else str(value)
        return out

    @property
    def effective_optimizer(self) -> str:
        if self.optimizer is not None:
            return self.optimizer
        return "adam" if self.model_name == "autoint" else "adagrad"

    @property
    def effective_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        # Measured (bench/models, MovieLens DeepFM, 300 x 128): Adagrad 0.1 -> AUC 0.740, 0.2 -> 0.749,
        # 0.3 -> 0.730; on the synthetic parity data 0.76 / 0.87 / 0.95 (Adam 0.01: 0.740 and 0.92).
        return 0.01 if self.effective_optimizer == "adam" else 0.2

    @property
    def immediate_types(self) -> List[str]:
        return _csv(self.immediate_action_types)

    @property
    def excluded_parameters(self) -> List[str]:
        return _csv(self.parameter_features_exclude)

    @property
    def acted_action_types(self) -> Optional[List[str]]:
        """None: every action type counts as acted on."""
        return _csv(self.exclude_acted_action_types) or None

    @property
    def client_keys(self) -> List[str]:
        return _csv(self.api_keys)

    @property
    def admin_keys(self) -> List[str]:
        return _csv(self.admin_api_keys)

    @property
    def subnet_ids(self) -> List[str]:
        return _csv(self.training_subnets)

    @property
    def security_group_ids(self) -> List[str]:
        return _csv(self.training_security_groups)


def _csv(value: str) -> List[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def settings_table_markdown() -> str:
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for f in fields(Settings):
        default = "(unset)" if f.default is None else "`{}`".format(f.default)
        rows.append("| `{}` | {} | {} |".format(f.metadata["env"], default, f.metadata["doc"]))
    return "\n".join(rows)
