"""Python client of EasyRec Online (pip install clients/python)."""
from easyrec_online_client.client import Client
from easyrec_online_client.errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    NoModel,
    NotFound,
    PayloadTooLarge,
    ServerError,
    Throttled,
    Unauthorized,
)

__version__ = "0.1.0"
__all__ = ["Client", "ApiError", "BadRequest", "Conflict", "Forbidden", "NoModel", "NotFound", "PayloadTooLarge",
           "ServerError", "Throttled", "Unauthorized"]
