"""Bucket lifecycle rules, played by the local runner: moto stores a bucket's lifecycle configuration
but never runs it.

The template's rule that matters locally deletes the objects of expired model versions (tagged by
publish.retire_old_versions) a day after they expire. A continuous trainer publishes a version
every few seconds while actions come in, each some megabytes of checkpoint and SavedModel; kept for
a day, they would fill a laptop's memory (moto) and state folder. So the runner applies every
enabled rule that expires objects by tag, with the rule's days replaced by `grace_s`: an object is
deleted on the first sweep at least `grace_s` after a sweep first saw it match. Expired versions are
already no rollback target and never current, so nothing serves them by then.

Deletes go through the local cloud's API, so the state folder follows. Rules without a tag filter
(noncurrent versions, incomplete uploads) are not played: the local buckets are not versioned.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Dict, List, Sequence, Tuple

log = logging.getLogger("local-lifecycle")

SWEEP_INTERVAL_S = 30.0
GRACE_S = 60.0


def tag_expiry_rules(configuration: Dict[str, Any]) -> List[Tuple[str, Dict[str, str]]]:
    """(prefix, tags) of each enabled rule of a GetBucketLifecycleConfiguration answer that expires
    current objects by tag."""
    rules = []
    for rule in configuration.get("Rules", []):
        if rule.get("Status") != "Enabled" or "Expiration" not in rule:
            continue
        scope = rule.get("Filter", {})
        both = scope.get("And", {})
        tags = {t["Key"]: t["Value"] for t in both.get("Tags", [])}
        if "Tag" in scope:
            tags[scope["Tag"]["Key"]] = scope["Tag"]["Value"]
        if tags:
            rules.append((both.get("Prefix", scope.get("Prefix", rule.get("Prefix", ""))), tags))
    return rules


class LifecycleSweeper:
    """Deletes the objects that the buckets' tag expiry rules match, `grace_s` after first seeing them."""

    def __init__(self, s3: Any, buckets: Sequence[str], grace_s: float = GRACE_S,
                 interval_s: float = SWEEP_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._s3 = s3
        self._buckets = list(buckets)
        self._grace_s = grace_s
        self._interval_s = interval_s
        self._clock = clock
        self._first_seen: Dict[Tuple[str, str], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lifecycle", daemon=True)

    def start(self) -> "LifecycleSweeper":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.sweep()
            except Exception:  # noqa: BLE001 - a failed sweep is retried at the next one
                log.exception("lifecycle sweep failed")

    def sweep(self) -> List[Tuple[str, str]]:
        """One pass over every bucket's rules. Returns the (bucket, key) pairs it deleted."""
        now = self._clock()
        matching = set()
        deleted: List[Tuple[str, str]] = []
        for bucket in self._buckets:
            try:
                configuration = self._s3.get_bucket_lifecycle_configuration(Bucket=bucket)
            except self._s3.exceptions.ClientError:
                continue  # no lifecycle configuration
            for prefix, tags in tag_expiry_rules(configuration):
                for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                    for obj in page.get("Contents", []):
                        key = obj["Key"]
                        tag_set = self._s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
                        if not all({"Key": k, "Value": v} in tag_set for k, v in tags.items()):
                            continue
                        matching.add((bucket, key))
                        if now - self._first_seen.setdefault((bucket, key), now) >= self._grace_s:
                            self._s3.delete_object(Bucket=bucket, Key=key)
                            deleted.append((bucket, key))
        # Forget what no longer matches (deleted, untagged): a key written again starts afresh.
        gone = set(deleted)
        self._first_seen = {k: t for k, t in self._first_seen.items() if k in matching and k not in gone}
        if deleted:
            log.info("lifecycle: deleted %d expired objects", len(deleted))
        return deleted
