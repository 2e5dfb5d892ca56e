"""The local runner plays the template's tag expiry rule that moto stores but never runs: expired
model versions' objects go, the rest stays (infra/local_runner/lifecycle.py)."""
from easyrec_online.modeling.publish import EXPIRED_TAG
from infra.local_runner.cloud import LocalCloud
from infra.local_runner.lifecycle import LifecycleSweeper
from infra.local_runner.provision import _lifecycle_rule
from infra.local_runner.template import load_template


class _Clock:
    now = 0.0

    def __call__(self):
        return self.now


def test_expired_version_objects_are_deleted_after_the_grace_and_only_they(tmp_path):
    rules = load_template("template.yaml")["Resources"]["DataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    cloud = LocalCloud(str(tmp_path), port=0)
    cloud.start()
    try:
        s3 = cloud.client("s3")
        s3.create_bucket(Bucket="data")
        s3.put_bucket_lifecycle_configuration(Bucket="data", LifecycleConfiguration={
            "Rules": [_lifecycle_rule(r) for r in rules]})
        cloud.restore()
        for key in ("models/v1/ckpt.data", "models/v2/ckpt.data", "actions/dt=2026-12-01/a.jsonl"):
            s3.put_object(Bucket="data", Key=key, Body=b"x")
        for key in ("models/v1/ckpt.data", "actions/dt=2026-12-01/a.jsonl"):  # the rule's prefix is models/
            s3.put_object_tagging(Bucket="data", Key=key, Tagging={"TagSet": [EXPIRED_TAG]})
        clock = _Clock()
        sweeper = LifecycleSweeper(s3, ["data"], grace_s=60, clock=clock)
        assert sweeper.sweep() == []  # first seen: the grace starts
        clock.now = 59
        assert sweeper.sweep() == []
        clock.now = 60
        assert sweeper.sweep() == [("data", "models/v1/ckpt.data")]
        keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="data")["Contents"])
        assert keys == ["actions/dt=2026-12-01/a.jsonl", "models/v2/ckpt.data"]
        assert not (tmp_path / "s3" / "data" / "models%2Fv1%2Fckpt.data").exists()  # the state folder follows
        assert (tmp_path / "s3" / "data" / "models%2Fv2%2Fckpt.data").exists()
    finally:
        cloud.stop()


def test_a_bucket_without_rules_is_left_alone(tmp_path):
    cloud = LocalCloud(str(tmp_path), port=0)
    cloud.start()
    try:
        s3 = cloud.client("s3")
        s3.create_bucket(Bucket="plain")
        cloud.restore()
        s3.put_object(Bucket="plain", Key="models/v1/x", Body=b"x")
        s3.put_object_tagging(Bucket="plain", Key="models/v1/x", Tagging={"TagSet": [EXPIRED_TAG]})
        sweeper = LifecycleSweeper(s3, ["plain"], grace_s=0)
        assert sweeper.sweep() == [] and sweeper.sweep() == []
    finally:
        cloud.stop()
