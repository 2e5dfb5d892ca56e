"""EasyRec Online: code shared by every function, the training task and the local runner."""

__version__ = "0.1.0"
