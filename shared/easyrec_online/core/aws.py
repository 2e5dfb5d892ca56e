"""The one factory for AWS clients.

Every boto3 client in the project comes from here, so the same code talks to AWS, to moto and to
LocalStack: the endpoint URL and region come from Settings. S3 uses path-style addressing when an
endpoint is set, because local emulators do not resolve virtual-host bucket names.
"""
from __future__ import annotations

import threading
from typing import Any, Dict, Optional, Tuple

import boto3
from botocore.config import Config

from easyrec_online.core.config import Settings

_lock = threading.Lock()
_clients: Dict[Tuple[str, Optional[str], str], Any] = {}


def client(service: str, settings: Optional[Settings] = None) -> Any:
    """A cached boto3 client for `service` (clients are thread-safe; creating them is not cheap)."""
    settings = settings or Settings.from_env()
    endpoint = (settings.aws_endpoint_url_dynamodb if service == "dynamodb" else None) or settings.aws_endpoint_url
    key = (service, endpoint, settings.aws_region)
    with _lock:
        found = _clients.get(key)
        if found is None:
            config = Config(
                retries={"max_attempts": 5, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
                s3={"addressing_style": "path"} if endpoint else None,
            )
            found = boto3.session.Session().client(
                service,
                region_name=settings.aws_region,
                endpoint_url=endpoint,
                config=config,
            )
            if endpoint and service == "s3":
                # Local emulators only: the model runtime's older urllib3 misreads LocalStack's
                # "100 Continue" interim response (BadStatusLine), so large uploads go without the
                # Expect header there. On AWS botocore's default stays.
                found.meta.events.register("before-sign.s3", _drop_expect_header)
            _clients[key] = found
        return found


def _drop_expect_header(request: Any, **_: Any) -> None:
    if "Expect" in request.headers:
        del request.headers["Expect"]


def reset_clients() -> None:
    """Forget cached clients (tests that point the factory at another endpoint)."""
    with _lock:
        _clients.clear()
