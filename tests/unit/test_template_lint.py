"""template.yaml is a valid SAM template: `sam validate --lint` (cfn-lint) passes, offline."""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_sam_validate_lint():
    sam = os.path.join(ROOT, ".venv-tools", "bin", "sam")
    result = subprocess.run([sam, "validate", "--lint"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, SAM_CLI_TELEMETRY="0"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr
