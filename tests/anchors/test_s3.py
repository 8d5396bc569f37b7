"""The S3 anchor against moto's server on 127.0.0.1, over HTTP, with the same boto3 code as for
AWS. moto enforces the refusal to delete a locked version; mode and retain-until are checked by
reading them back, as the anchor itself does."""

from datetime import datetime, timedelta, timezone

import pytest
from botocore.exceptions import ClientError

from appliance.anchors.base import AnchorConfigError, AnchoredCheckpoint, AnchorError, AnchorFork
from appliance.anchors.s3 import S3Anchor
from tests.anchors.conftest import ORIGIN, note_for

KEY = "evidence/test.example/anchors/checkpoints/00000000000000000042"


def make(env, bucket="locked", **kwargs) -> S3Anchor:
    return S3Anchor(env[bucket], origin=ORIGIN, prefix="evidence/", endpoint=env["endpoint"], region="us-east-1",
                    **kwargs)


def test_publish_writes_one_compliance_locked_object_with_a_checksum(s3_env):
    anchor = make(s3_env, retention_days=30)
    note = note_for(42)
    location = anchor.publish(AnchoredCheckpoint(ORIGIN, 42, note))
    assert location.startswith(f"s3://{s3_env['locked']}/{KEY}?versionId=")
    head = s3_env["client"].get_object(Bucket=s3_env["locked"], Key=KEY, ChecksumMode="ENABLED")
    assert head["Body"].read() == note.encode()
    assert head["ObjectLockMode"] == "COMPLIANCE"
    expected = datetime.now(timezone.utc) + timedelta(days=30)
    assert abs((head["ObjectLockRetainUntilDate"] - expected).total_seconds()) < 60
    assert head.get("ChecksumSHA256"), "uploaded with a SHA-256 integrity checksum"


def test_a_locked_version_cannot_be_deleted_before_its_retain_until_date(s3_env):
    anchor = make(s3_env)
    location = anchor.publish(AnchoredCheckpoint(ORIGIN, 42, note_for(42)))
    version = location.split("versionId=")[1]
    with pytest.raises(ClientError) as refused:
        s3_env["client"].delete_object(Bucket=s3_env["locked"], Key=KEY, VersionId=version)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    # A plain DELETE only adds a delete marker: the anchor still holds the locked version.
    s3_env["client"].delete_object(Bucket=s3_env["locked"], Key=KEY)
    assert anchor.fetch(42).note == note_for(42)
    assert anchor.publish(AnchoredCheckpoint(ORIGIN, 42, note_for(42))) == location
    assert [c.size for c in anchor.checkpoints()] == [42]


def test_same_note_again_is_a_no_op(s3_env):
    anchor = make(s3_env)
    checkpoint = AnchoredCheckpoint(ORIGIN, 42, note_for(42))
    assert anchor.publish(checkpoint) == anchor.publish(checkpoint)
    versions = s3_env["client"].list_object_versions(Bucket=s3_env["locked"], Prefix=KEY)["Versions"]
    assert len(versions) == 1


def test_a_different_note_for_the_same_size_is_a_fork_and_nothing_is_overwritten(s3_env):
    anchor = make(s3_env)
    ours = note_for(42)
    anchor.publish(AnchoredCheckpoint(ORIGIN, 42, ours))
    with pytest.raises(AnchorFork) as fork:
        anchor.publish(AnchoredCheckpoint(ORIGIN, 42, note_for(42, b"\x07" * 32)))
    assert fork.value.size == 42 and "different root" in str(fork.value)
    versions = s3_env["client"].list_object_versions(Bucket=s3_env["locked"], Prefix=KEY)["Versions"]
    assert len(versions) == 1 and anchor.fetch(42).note == ours


def test_an_overwrite_by_someone_else_shows_as_a_fork(s3_env):
    anchor = make(s3_env)
    anchor.publish(AnchoredCheckpoint(ORIGIN, 42, note_for(42)))
    s3_env["client"].put_object(Bucket=s3_env["locked"], Key=KEY, Body=note_for(42, b"\x09" * 32).encode(),
                                ChecksumAlgorithm="SHA256")
    with pytest.raises(AnchorFork, match="2 versions with different bytes"):
        anchor.fetch(42)
    with pytest.raises(AnchorFork):
        anchor.publish(AnchoredCheckpoint(ORIGIN, 42, note_for(42)))


def test_a_bucket_without_object_lock_is_refused_with_a_clear_message(s3_env):
    anchor = make(s3_env, "plain")
    with pytest.raises(AnchorConfigError, match="does not have S3 Object Lock enabled"):
        anchor.publish(AnchoredCheckpoint(ORIGIN, 1, note_for(1)))
    assert "Contents" not in s3_env["client"].list_objects_v2(Bucket=s3_env["plain"])


def test_an_object_without_compliance_retention_is_refused(s3_env):
    s3_env["client"].put_object(Bucket=s3_env["locked"], Key=KEY, Body=note_for(42).encode(), ChecksumAlgorithm="SHA256")
    with pytest.raises(AnchorConfigError, match="is not locked as required"):
        make(s3_env).publish(AnchoredCheckpoint(ORIGIN, 42, note_for(42)))


def test_listing_latest_and_fetch_in_size_order(s3_env):
    anchor = make(s3_env)
    assert anchor.latest() is None and anchor.fetch(3) is None
    for size in (1000, 3, 77):
        anchor.publish(AnchoredCheckpoint(ORIGIN, size, note_for(size)))
    assert [c.size for c in anchor.checkpoints()] == [3, 77, 1000]
    assert anchor.latest() == AnchoredCheckpoint(ORIGIN, 1000, note_for(1000))
    other_origin = S3Anchor(s3_env["locked"], origin="other/log", prefix="evidence/", endpoint=s3_env["endpoint"],
                            region="us-east-1")
    assert other_origin.latest() is None


def test_an_unreachable_endpoint_is_an_anchor_error():
    anchor = S3Anchor("bucket", origin=ORIGIN, endpoint="http://127.0.0.1:1", region="us-east-1")
    with pytest.raises(AnchorError):
        anchor.publish(AnchoredCheckpoint(ORIGIN, 1, note_for(1)))
