"""Rewrite the README's configuration table from shared/easyrec_online/config.py (`make readme`)."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "shared"))

from easyrec_online.core.config import settings_table_markdown  # noqa: E402

START = "generated from that module (a test keeps it in step):\n\n"
END = "\n\n## Deploy to AWS"

path = os.path.join(ROOT, "README.md")
with open(path) as f:
    text = f.read()
a, b = text.index(START) + len(START), text.index(END)
with open(path, "w") as f:
    f.write(text[:a] + settings_table_markdown() + text[b:])
