"""POST /model/export: a model version as a downloadable artifact, or copied to a named place.

  {}                                   -> the current version's SavedModel as one .tar.gz under
                                          exports/<version>.tar.gz, with a pre-signed download URL
  {"version": "v..."}                  -> the same for any servable version
  {"destination": "serving/prod"}      -> the SavedModel copied to exports/serving/prod/ in the
                                          data bucket (a server-side copy per file)

A destination is a relative path of plain segments ([A-Za-z0-9._-], not "." or ".."): it always
lands under the bucket's exports/ prefix, so no request can write over actions or model versions.
"""
from __future__ import annotations

import io
import re
import tarfile
from typing import Any, Dict, List, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

from easyrec_online.core.config import Settings
from easyrec_online.core.http import ApiError
from easyrec_online.state.registry import ModelVersion, StateStore

EXPORTS_PREFIX = "exports/"
_SEGMENT = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
DOWNLOAD_URL_TTL_S = 3600


class ExportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Optional[StrictStr] = Field(None, min_length=1, max_length=128)
    destination: Optional[StrictStr] = Field(None, min_length=1, max_length=512)

    @field_validator("destination")
    @classmethod
    def _relative_plain_path(cls, value: Optional[str]) -> Optional[str]:
        if value is None:
            return value
        segments = value.strip("/").split("/")
        for segment in segments:
            if segment in ("", ".", "..") or not _SEGMENT.match(segment):
                raise ValueError("a relative path of plain segments (letters, digits, '.', '_', '-'; no '..'), "
                                 "e.g. 'serving/prod'")
        return "/".join(segments)


class ModelExporter:
    def __init__(self, settings: Settings, state: StateStore, s3: Any) -> None:
        self._settings = settings
        self._state = state
        self._s3 = s3

    def _version(self, name: Optional[str]) -> ModelVersion:
        version = self._state.get_version(name) if name else self._state.get_current()
        if version is None:
            if name:
                raise ApiError(404, "not_found", "no model version {}".format(name), ["version"])
            raise ApiError(409, "no_model", "there is no current model to export yet (train one first)")
        if version.status != "ready":
            raise ApiError(409, "not_servable", "version {} is {}: {}".format(
                version.version, version.status, version.gate.get("reason", "")), ["version"])
        return version

    def _files(self, version: ModelVersion) -> List[str]:
        keys: List[str] = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self._settings.data_bucket, Prefix=version.saved_model_prefix):
            keys += [o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith("/")]
        if not keys:
            raise ApiError(409, "artifact_missing", "version {} has no SavedModel files".format(version.version))
        return keys

    def export(self, request: ExportRequest) -> Dict[str, Any]:
        version = self._version(request.version)
        keys = self._files(version)
        bucket = self._settings.data_bucket
        result: Dict[str, Any] = {"status": "exported", "version": version.version, "lineage": version.lineage,
                                  "model_name": version.model_name, "files": len(keys)}
        if request.destination:
            target = "{}{}/".format(EXPORTS_PREFIX, request.destination)
            for key in keys:
                self._s3.copy_object(Bucket=bucket, Key=target + key[len(version.saved_model_prefix):],
                                     CopySource={"Bucket": bucket, "Key": key})
            result["location"] = "s3://{}/{}".format(bucket, target)
            return result
        archive_key = "{}{}.tar.gz".format(EXPORTS_PREFIX, version.version)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for key in keys:
                body = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                info = tarfile.TarInfo("saved_model/" + key[len(version.saved_model_prefix):])
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
        self._s3.put_object(Bucket=bucket, Key=archive_key, Body=buffer.getvalue(), ContentType="application/gzip")
        result["location"] = "s3://{}/{}".format(bucket, archive_key)
        result["bytes"] = buffer.tell()
        result["download_url"] = self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": archive_key}, ExpiresIn=DOWNLOAD_URL_TTL_S)
        result["download_url_expires_in_s"] = DOWNLOAD_URL_TTL_S
        return result
