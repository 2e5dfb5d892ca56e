"""LocalStack in host mode on 127.0.0.1, around a command: the integration suite's second backend.

  .venv/bin/python -m infra.localstack [--port 4566] -- <command ...>

Starts LocalStack (S3, SQS, Kinesis) from .venv-localstack with everything on loopback and under
.local/localstack, waits until it answers, runs the command with INTEGRATION_BACKEND=localstack and
LOCALSTACK_ENDPOINT set, stops LocalStack (SIGTERM, then SIGKILL: it sometimes hangs after Kinesis
use) and exits with the command's status. `make test-localstack` runs the integration suite this way.

What it takes offline (../shared/notes/local-cloud.md): hypercorn as the gateway, a pre-made TLS
certificate (pyOpenSSL 26 lacks an API LocalStack's own generator uses), no DNS server, no Docker
detection. Kinesis is kinesis-mock, an npm package LocalStack installs at first use; it binds
0.0.0.0 with no option to change that, so `make setup` installs it (`--prepare`) and patches it to 127.0.0.1.
DynamoDB and Lambda cannot run here: the suite sends DynamoDB to moto and says so.
"""
from __future__ import annotations

import argparse
import glob
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = os.path.join(ROOT, ".venv-localstack", "bin", "python")
HOME = os.path.join(ROOT, ".local", "localstack")
KINESIS_MOCK_BIND = 'Ce("0.0.0.0")'


def _environment(port: int) -> dict:
    fs_root, tmp = os.path.join(HOME, "fs"), os.path.join(HOME, "tmp")
    os.makedirs(fs_root, exist_ok=True)
    os.makedirs(tmp, exist_ok=True)
    env = dict(os.environ)  # keeps the machine's CA settings: npm needs them to fetch kinesis-mock
    env.update({
        "GATEWAY_SERVER": "hypercorn", "GATEWAY_LISTEN": "127.0.0.1:{}".format(port), "OVERRIDE_IN_DOCKER": "0",
        "DNS_ADDRESS": "0", "SKIP_SSL_CERT_DOWNLOAD": "1", "CUSTOM_SSL_CERT_PATH": _certificate(),
        "FILESYSTEM_ROOT": fs_root, "TMPDIR": tmp, "SERVICES": "s3,sqs,kinesis", "DISABLE_EVENTS": "1",
    })
    return env


def _certificate() -> str:
    path = os.path.join(HOME, "server.test.pem")
    if not os.path.exists(path):
        key, cert = path + ".key", path + ".crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "3650", "-subj", "/CN=localhost.localstack.cloud"], check=True, capture_output=True)
        with open(path, "w") as out:
            for part in (key, cert):  # LocalStack wants the key and the certificate in one file
                with open(part) as f:
                    out.write(f.read())
    return path


def _loopback_kinesis_mock(env: dict, install: bool) -> None:
    """Install kinesis-mock (`install`: at set-up, never at test time; LocalStack would at the first
    CreateStream) and make it bind 127.0.0.1."""
    # lpm installs under <root>/usr/lib/localstack, installs at first use go under <root>/var/lib/...
    pattern = os.path.join(env["FILESYSTEM_ROOT"], "**", "kinesis-local", "*", "node_modules", "kinesis-local",
                           "main.js")
    if not glob.glob(pattern, recursive=True):
        if not install:
            raise SystemExit("localstack: kinesis-mock is not installed under {}: run `make setup`".format(
                env["FILESYSTEM_ROOT"]))
        subprocess.run([PYTHON, "-m", "localstack.cli.lpm", "install", "kinesis-mock"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
    scripts = glob.glob(pattern, recursive=True)
    if not scripts:
        raise SystemExit("localstack: kinesis-mock did not install under " + env["FILESYSTEM_ROOT"])
    for script in scripts:
        with open(script) as f:
            code = f.read()
        if KINESIS_MOCK_BIND in code:
            if code.count(KINESIS_MOCK_BIND) != 1:
                raise SystemExit("localstack: unexpected kinesis-mock build, not patching " + script)
            with open(script, "w") as f:
                f.write(code.replace(KINESIS_MOCK_BIND, 'Ce("127.0.0.1")'))


def _wait_ready(url: str, process: subprocess.Popen, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("localstack: exited at start (code {}); see {}".format(process.returncode, HOME))
        try:
            with urllib.request.urlopen(url + "/_localstack/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit("localstack: not ready within {:.0f} s".format(timeout_s))


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the whole group: kinesis-mock's node process too
        process.wait(timeout=10)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=int(os.environ.get("LOCALSTACK_PORT", "4566")))
    parser.add_argument("--prepare", action="store_true",
                        help="install what LocalStack needs offline (kinesis-mock) and exit: `make setup` runs it")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.prepare:
        _loopback_kinesis_mock(_environment(args.port), install=True)
        print("localstack: kinesis-mock installed (loopback only)")
        return 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give a command to run, after --")
    if not os.path.exists(PYTHON):
        raise SystemExit("localstack: {} is missing: run `make setup`".format(PYTHON))
    env = _environment(args.port)
    _loopback_kinesis_mock(env, install=False)
    url = "http://127.0.0.1:{}".format(args.port)
    try:
        urllib.request.urlopen(url + "/_localstack/health", timeout=2)
        busy = True
    except urllib.error.HTTPError:
        busy = True
    except OSError:
        busy = False  # nothing there, as it should be
    if busy:
        raise SystemExit("localstack: something already answers on {}: stop it first".format(url))
    # Stopped by a signal (CI timeout, Ctrl-C): still stop LocalStack and its kinesis-mock.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    log = open(os.path.join(HOME, "localstack.log"), "ab")
    process = subprocess.Popen([PYTHON, "-m", "localstack.runtime.main"], env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_ready(url, process)
        print("localstack: ready on {} (S3, SQS, Kinesis); log in {}".format(url, log.name), flush=True)
        return subprocess.call(command, env=dict(os.environ, INTEGRATION_BACKEND="localstack",
                                                 LOCALSTACK_ENDPOINT=url))
    finally:
        _stop(process)


if __name__ == "__main__":
    sys.exit(main())
