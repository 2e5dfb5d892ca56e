"""A model version's files on local disk: what training (to continue or evaluate) and serving both need.

Downloads are staged and renamed into place, with a marker file once whole, so a reader never sees
half a version and a version is downloaded once per disk.
"""
from __future__ import annotations

import os
import shutil
import threading
from typing import Any, Set

from easyrec_online.artifacts.catalog import Catalog
from easyrec_online.state.registry import ModelVersion

COMPLETE_MARKER = ".complete"


def download_saved_model(s3: Any, bucket: str, version: ModelVersion, cache_dir: str) -> str:
    """The version's SavedModel on local disk (downloaded once; a marker file says it is whole)."""
    target = os.path.join(cache_dir, version.version)
    if os.path.exists(os.path.join(target, COMPLETE_MARKER)):
        return target
    # Per process and thread: a container's background swap and an arm's first request may fetch at once.
    staging = target + ".partial-{}-{}".format(os.getpid(), threading.get_ident())
    shutil.rmtree(staging, ignore_errors=True)
    paginator = s3.get_paginator("list_objects_v2")
    found = 0
    for page in paginator.paginate(Bucket=bucket, Prefix=version.saved_model_prefix):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(version.saved_model_prefix):]
            if not rel or rel.endswith("/"):
                continue
            path = os.path.join(staging, *rel.split("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            s3.download_file(bucket, obj["Key"], path)
            found += 1
    if found == 0:
        raise FileNotFoundError("no SavedModel files under s3://{}/{}".format(bucket, version.saved_model_prefix))
    open(os.path.join(staging, COMPLETE_MARKER), "w").close()
    shutil.rmtree(target, ignore_errors=True)
    os.rename(staging, target)
    return target


def load_catalog(s3: Any, bucket: str, version: ModelVersion, cache_dir: str) -> Catalog:
    """The version's catalog (kept on local disk beside its SavedModel); empty for versions without one."""
    path = os.path.join(cache_dir, version.version + ".catalog.json")
    if not os.path.exists(path):
        try:
            body = s3.get_object(Bucket=bucket, Key=version.catalog_key)["Body"].read()
        except Exception as exc:  # noqa: BLE001 - versions trained before catalogs existed
            if "NoSuchKey" not in str(exc) and "404" not in str(exc):
                raise
            return Catalog()
        os.makedirs(cache_dir, exist_ok=True)
        staging = "{}.partial-{}-{}".format(path, os.getpid(), threading.get_ident())
        with open(staging, "wb") as f:
            f.write(body)
        os.rename(staging, path)
    with open(path, "r") as f:
        return Catalog.from_json(f.read())


def remove_versions_except(cache_dir: str, keep: Set[str]) -> int:
    """Delete downloaded versions (SavedModel folders, catalogs, unfinished downloads) other than `keep`;
    returns how many versions went."""
    if not os.path.isdir(cache_dir):
        return 0
    removed = set()
    for name in os.listdir(cache_dir):
        version = name.split(".", 1)[0]  # <version>, <version>.catalog.json, <version>.partial-<pid>
        if version in keep or not version.startswith("v"):
            continue
        path = os.path.join(cache_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.remove(path)
            except OSError:
                pass
        removed.add(version)
    return len(removed)
