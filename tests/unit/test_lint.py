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


# Polling helpers may sleep between looks at the state they wait on; nothing else in a test may sleep
# a second or more: a fixed pause is a guess at how long something takes, wrong on a slow day.
POLLING_HELPER_WORDS = ("wait", "poll", "until", "eventually")


def _polling_helper(function) -> bool:
    return bool(function) and not function.startswith("test") and any(w in function.lower() for w in POLLING_HELPER_WORDS)


def _long_sleeps(source: str, path: str):
    import ast

    found = []

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            if isinstance(child, ast.Call):
                callee = child.func
                called = callee.attr if isinstance(callee, ast.Attribute) else getattr(callee, "id", "")
                literal = child.args[0] if child.args else None
                if (called == "sleep" and isinstance(literal, ast.Constant) and isinstance(literal.value, (int, float))
                        and literal.value >= 1 and not _polling_helper(function)):
                    found.append("{}:{} sleep({}) in {}".format(path, child.lineno, literal.value, function or "module"))
            visit(child, name)

    visit(ast.parse(source), None)
    return found


def test_no_test_sleeps_a_second_or_more_outside_a_polling_helper():
    found = []
    for folder, _, files in os.walk(os.path.join(ROOT, "tests")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path) as f:
                    found += _long_sleeps(f.read(), os.path.relpath(path, ROOT))
    assert not found, "wait on observable state instead (tests/conftest.wait_for): " + "; ".join(found)


def test_the_sleep_rule_catches_a_sleep_outside_a_polling_helper():
    code = ("import time\n"
            "def test_x():\n    time.sleep(8)\n"
            "def wait_for_it():\n    time.sleep(2)\n"
            "def test_y():\n    time.sleep(0.2)\n"
            "def test_z_waits_for_it():\n    time.sleep(1)\n")
    assert _long_sleeps(code, "t.py") == ["t.py:3 sleep(8) in test_x", "t.py:9 sleep(1) in test_z_waits_for_it"]
