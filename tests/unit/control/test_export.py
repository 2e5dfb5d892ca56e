import io
import tarfile

import boto3
import pytest
from moto import mock_aws

from easyrec_online.control.export import ExportRequest, ModelExporter
from easyrec_online.control.models import list_updates, parse_limit
from easyrec_online.core.config import Settings
from easyrec_online.core.http import ApiError, validate
from easyrec_online.state.registry import InMemoryStateStore, ModelVersion


@pytest.fixture
def published():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="data")
        state = InMemoryStateStore()
        for name, status, mode in (("v1", "ready", "full"), ("v2", "ready", "incremental"), ("v3", "rejected", "incremental")):
            record = ModelVersion(name, "deepfm-v1", "deepfm", "models/deepfm-v1/{}/".format(name), "t", status=status,
                                  mode=mode, metrics={"auc": 0.7}, timings={"total_s": 2.0, "warm": 1.0})
            s3.put_object(Bucket="data", Key=record.saved_model_prefix + "saved_model.pb", Body=name.encode())
            s3.put_object(Bucket="data", Key=record.saved_model_prefix + "variables/variables.index", Body=b"i")
            state.put_version(record)
        state.set_current("v2")
        yield ModelExporter(Settings.from_env({"DATA_BUCKET": "data"}), state, s3), s3, state


def test_export_the_current_version_as_a_downloadable_archive(published):
    exporter, s3, _ = published
    result = exporter.export(validate(ExportRequest, {}))
    assert result["version"] == "v2" and result["files"] == 2 and result["location"] == "s3://data/exports/v2.tar.gz"
    body = s3.get_object(Bucket="data", Key="exports/v2.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert sorted(tar.getnames()) == ["saved_model/saved_model.pb", "saved_model/variables/variables.index"]
        assert tar.extractfile("saved_model/saved_model.pb").read() == b"v2"
    assert "exports/v2.tar.gz" in result["download_url"] and "Signature" in result["download_url"]


def test_export_a_chosen_version_to_a_named_place_and_refuse_traversal(published):
    exporter, s3, _ = published
    result = exporter.export(validate(ExportRequest, {"version": "v1", "destination": "serving/prod/"}))
    assert result["location"] == "s3://data/exports/serving/prod/"
    assert s3.get_object(Bucket="data", Key="exports/serving/prod/saved_model.pb")["Body"].read() == b"v1"
    for destination in ("../models/x", "a/../../b", "/abs/../x", "a//b", "sp ace", "."):
        with pytest.raises(ApiError) as caught:
            validate(ExportRequest, {"destination": destination})
        assert caught.value.status == 400 and caught.value.fields == ["destination"], destination
    for version, status in (("v3", 409), ("v9", 404)):
        with pytest.raises(ApiError) as caught:
            exporter.export(validate(ExportRequest, {"version": version}))
        assert caught.value.status == status


def test_updates_list_newest_first_with_the_current_marked():
    state = InMemoryStateStore()
    for name in ("v1", "v2", "v3"):
        state.put_version(ModelVersion(name, "deepfm-v1", "deepfm", "p/", "t", metrics={"auc": 0.6}))
    state.set_current("v2")
    listed = list_updates(state, limit=2)
    assert listed["current_version"] == "v2" and [u["version"] for u in listed["updates"]] == ["v3", "v2"]
    assert [u["current"] for u in listed["updates"]] == [False, True] and listed["updates"][0]["auc"] == 0.6
    assert list_updates(state, lineage="other")["updates"] == []
    assert parse_limit(None) == 20 and parse_limit("5") == 5
    for bad in ("0", "101", "ten"):
        with pytest.raises(ApiError):
            parse_limit(bad)
