"""Benchmarks of EasyRec Online (see `python -m bench` and the README's Benchmarks section)."""
import atexit
import os
import shutil
import tempfile


def scratch_dir(prefix: str) -> str:
    """A temporary folder for one benchmark's service (its cloud state, models, logs), removed when the
    process exits: a quality run stores about 50 MB of checkpoints per version, 2-3 GB per model.
    BENCH_KEEP_TMP=1 keeps them for inspection."""
    path = tempfile.mkdtemp(prefix=prefix)
    if os.environ.get("BENCH_KEEP_TMP") != "1":
        atexit.register(shutil.rmtree, path, True)
    return path
