"""The local runner: template.yaml served on one machine (see __main__)."""
import os
import sys

# The runner speaks the service's own wire formats (e.g. the Lambda Kafka event) from the shared package.
_SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "shared")
if _SHARED not in sys.path:
    sys.path.insert(0, _SHARED)
