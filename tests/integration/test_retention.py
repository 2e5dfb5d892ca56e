"""Old versions expire: beyond the newest KEEP_VERSIONS, except the current one, their records say
"expired" (no rollback to them) and their objects carry the tag the bucket's lifecycle rule deletes."""
import pytest

from easyrec_online import wiring
from easyrec_online.core import aws
from easyrec_online.modeling.publish import EXPIRED_TAG, retire_old_versions
from easyrec_online.state.registry import ModelVersion, new_id
from tests.integration.conftest import make_cloud


def test_versions_beyond_the_newest_n_expire_but_never_the_current_one(moto_endpoint):
    settings = make_cloud(moto_endpoint, KEEP_VERSIONS="3")
    state, s3 = wiring.state_store(settings), aws.client("s3", settings)
    names = [new_id("v") for _ in range(6)]
    for name in names:
        record = ModelVersion(name, "l", "deepfm", "models/l/{}/".format(name), "t")
        s3.put_object(Bucket=settings.data_bucket, Key=record.saved_model_prefix + "saved_model.pb", Body=b"x")
        state.put_version(record)
    state.set_current(names[0], pinned=True)  # an old version rolled back to
    assert sorted(retire_old_versions(settings, state, s3)) == sorted(names[1:3])
    for name in names:
        tags = s3.get_object_tagging(Bucket=settings.data_bucket,
                                     Key="models/l/{}/saved_model/saved_model.pb".format(name))["TagSet"]
        assert (tags == [EXPIRED_TAG]) == (name in names[1:3]), name
        assert (state.get_version(name).status == "expired") == (name in names[1:3])
    with pytest.raises(ValueError):
        state.set_current(names[1])  # no rollback to an expired version
    assert retire_old_versions(settings, state, s3) == []  # nothing twice
