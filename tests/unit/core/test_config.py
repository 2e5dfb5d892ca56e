import os
from dataclasses import fields

import pytest

from easyrec_online.core.config import Settings, settings_table_markdown
from tests.conftest import ROOT


def test_defaults_and_overrides():
    s = Settings.from_env({})
    assert s.api_version == "1.1.0" and s.aws_endpoint_url is None and s.train_steps == 200
    s = Settings.from_env({"TRAIN_STEPS": "7", "AWS_ENDPOINT_URL": "http://127.0.0.1:1"})
    assert s.train_steps == 7 and s.aws_endpoint_url == "http://127.0.0.1:1"


def test_bad_value_names_the_variable():
    with pytest.raises(ValueError, match="TRAIN_STEPS"):
        Settings.from_env({"TRAIN_STEPS": "many"})


def test_as_env_round_trips():
    s = Settings.from_env({"MAX_TOP_K": "5"})
    assert Settings.from_env(s.as_env()) == s


def test_readme_documents_every_setting():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    assert settings_table_markdown() in readme, "run `make readme` to regenerate the table"
    assert all(f.metadata["env"] in readme for f in fields(Settings))


def test_the_optimizer_and_its_learning_rate_default_per_model_unless_set():
    assert Settings.from_env({}).effective_optimizer == "adagrad"
    autoint = Settings.from_env({"MODEL_NAME": "autoint"})
    assert autoint.effective_optimizer == "adam" and autoint.effective_learning_rate == 0.01
    chosen = Settings.from_env({"MODEL_NAME": "autoint", "OPTIMIZER": "adagrad"})
    assert chosen.effective_optimizer == "adagrad" and chosen.effective_learning_rate == 0.2
