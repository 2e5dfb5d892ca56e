"""Static checks of the repository: template.yaml is a valid SAM template (`sam validate --lint`,
cfn-lint, offline) and the Python code passes ruff (ruff.toml: sorted imports, nothing unused or
undefined)."""
import os
import subprocess

from tests.conftest import ROOT

TOOLS = os.path.join(ROOT, ".venv-tools", "bin")


def test_sam_validate_lint():
    result = subprocess.run([os.path.join(TOOLS, "sam"), "validate", "--lint"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, env=dict(os.environ, SAM_CLI_TELEMETRY="0"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_ruff():
    result = subprocess.run([os.path.join(TOOLS, "ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
