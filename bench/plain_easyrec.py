"""Plain EasyRec, for the training-overhead comparison (model runtime, Python 3.7).

  .venv-model/bin/python bench/plain_easyrec.py <kept task workdir> <version>   (settings in the environment)

Continues training the way an EasyRec user would by hand: the parent version's checkpoint in a
fresh model_dir, the task's own pipeline.config and CSV rows (the same new data), then
`python -m easy_rec.python.train_eval --pipeline_config_path ... --continue_train` in a new process.
Prints {"wall_s": ...} of that process.
"""
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "shared"))

from easyrec_online import wiring  # noqa: E402
from easyrec_online.core import aws  # noqa: E402
from easyrec_online.core.config import Settings  # noqa: E402
from easyrec_online.modeling.job import download_checkpoint  # noqa: E402


def main():
    workdir, version_id = sys.argv[1], sys.argv[2]
    settings = Settings.from_env()
    state = wiring.state_store(settings)
    version = state.get_version(version_id)
    parent = state.get_version(version.parent_version)
    model_dir = os.path.join(workdir, "plain_model_dir")
    download_checkpoint(aws.client("s3", settings), settings.data_bucket, parent, model_dir)
    with open(os.path.join(workdir, "pipeline.config")) as f:
        config = f.read()
    config = re.sub(r'model_dir: "[^"]*"', 'model_dir: "{}"'.format(model_dir), config)
    path = os.path.join(workdir, "plain.config")
    with open(path, "w") as f:
        f.write(config)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "easy_rec.python.train_eval", "--pipeline_config_path", path,
                    "--continue_train"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(json.dumps({"wall_s": time.monotonic() - started}))


if __name__ == "__main__":
    main()
