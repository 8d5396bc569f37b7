"""The S3 anchor (boto3; AWS or any S3-compatible endpoint): one object per checkpoint, written
once under Object Lock in COMPLIANCE mode, so nobody (not even the account root) can delete or
overwrite that version before its retain-until date.

Key: `<prefix><origin>/checkpoints/<size, 20 digits>`; body: the note's bytes; uploaded with a
SHA-256 checksum and `If-None-Match: *`. A bucket without Object Lock is refused. After writing,
the object is read back and its bytes, lock mode and retain-until checked here, not assumed.

Versions matter: the appliance's credentials can add a new version over a key, or a delete
marker, without touching the locked version. So every version of a key is read (delete markers
ignored): the oldest is what the anchor holds, and a later version with other bytes is a fork.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from appliance.anchors.base import AnchorConfigError, AnchoredCheckpoint, AnchorError, AnchorFork, fork_message

_DIGITS = 20
COMPLIANCE = "COMPLIANCE"


@dataclass(frozen=True)
class _Version:
    version_id: str
    data: bytes
    mode: str | None
    retain_until: datetime | None


def _oldest_first(versions: list[dict]) -> list[str]:
    return [v["VersionId"] for v in sorted(versions, key=lambda v: v["LastModified"])]


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class S3Anchor:
    """Checkpoints of `origin` as locked objects in `bucket` under `prefix`."""

    def __init__(self, bucket: str, *, origin: str, prefix: str = "", endpoint: str | None = None,
                 region: str | None = None, retention_days: int = 400,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.bucket, self.origin, self.retention_days, self._clock = bucket, origin, retention_days, clock
        self.name = f"s3:{bucket}/{prefix}"
        self._folder = f"{prefix}{origin}/checkpoints/"
        # Short timeouts and few retries: the outbox does the patient retrying, with backoff.
        config = Config(connect_timeout=5, read_timeout=15, retries={"max_attempts": 2, "mode": "standard"})
        self._client = boto3.client("s3", endpoint_url=endpoint, region_name=region, config=config)
        self._locked = False

    def _key(self, size: int) -> str:
        return f"{self._folder}{size:0{_DIGITS}d}"

    def _call(self, what: str, operation: Callable[..., dict], **params: object) -> dict:
        try:
            return operation(Bucket=self.bucket, **params)
        except ClientError as error:
            raise AnchorError(f"{self.name}: {what} failed: {_code(error)}: {error}") from error
        except BotoCoreError as error:
            raise AnchorError(f"{self.name}: {what} failed: {error}") from error

    def require_object_lock(self) -> None:
        """Raise `AnchorConfigError` unless the bucket has Object Lock enabled (checked once)."""
        if self._locked:
            return
        try:
            found = self._client.get_object_lock_configuration(Bucket=self.bucket)
        except ClientError as error:
            if _code(error) != "ObjectLockConfigurationNotFoundError":
                raise AnchorError(f"{self.name}: reading the Object Lock configuration failed: {error}") from error
            found = {}
        except BotoCoreError as error:
            raise AnchorError(f"{self.name}: reading the Object Lock configuration failed: {error}") from error
        if found.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") != "Enabled":
            raise AnchorConfigError(
                f"{self.name}: bucket {self.bucket!r} does not have S3 Object Lock enabled, so anchored checkpoints "
                "could be deleted or overwritten; use a bucket created with Object Lock (or enable it on this one)")
        self._locked = True

    def _listed(self, prefix: str) -> Iterator[tuple[str, list[str]]]:
        """(key, its version IDs oldest first) for every key under `prefix` with at least one
        version, in key order; delete markers are not versions, so "deleted" keys still show."""
        key, found = None, []
        for page in self._pages(prefix):
            for version in page.get("Versions", []):
                if version["Key"] != key:
                    if found:
                        yield key, _oldest_first(found)
                    key, found = version["Key"], []
                found.append(version)
        if found:
            yield key, _oldest_first(found)

    def _held(self, key: str) -> list[_Version]:
        ids = next((ids for listed, ids in self._listed(key) if listed == key), [])
        return [self._read(key, version_id) for version_id in ids]

    def _pages(self, prefix: str) -> Iterator[dict]:
        try:
            yield from self._client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=prefix)
        except ClientError as error:
            raise AnchorError(f"{self.name}: listing {prefix!r} failed: {_code(error)}: {error}") from error
        except BotoCoreError as error:
            raise AnchorError(f"{self.name}: listing {prefix!r} failed: {error}") from error

    def _read(self, key: str, version_id: str) -> _Version:
        found = self._call(f"reading {key}", self._client.get_object, Key=key, VersionId=version_id,
                           ChecksumMode="ENABLED")
        try:
            data = found["Body"].read()
        except (BotoCoreError, OSError) as error:
            raise AnchorError(f"{self.name}: reading {key} failed: {error}") from error
        return _Version(version_id, data, found.get("ObjectLockMode"), found.get("ObjectLockRetainUntilDate"))

    def _one(self, size: int, held: list[_Version], ours: bytes | None = None) -> _Version:
        """The version the anchor holds; `AnchorFork` if versions (or ours) disagree."""
        first = held[0]
        for other in held[1:]:
            if other.data != first.data:
                raise AnchorFork(f"{self.name} holds {len(held)} versions with different bytes for size {size}; "
                                 f"someone wrote over {self._key(size)}", size=size)
        if ours is not None and first.data != ours:
            raise AnchorFork(fork_message(self.name, size, first.data.decode("utf-8", "replace"),
                                          ours.decode("utf-8", "replace")), size=size)
        return first

    def publish(self, checkpoint: AnchoredCheckpoint) -> str:
        if checkpoint.origin != self.origin:
            raise AnchorError(f"{self.name} keeps checkpoints of {self.origin!r}, not {checkpoint.origin!r}")
        self.require_object_lock()
        key, data = self._key(checkpoint.size), checkpoint.note.encode("utf-8")
        held = self._held(key)
        written_until = None
        if not held:
            written_until = (self._clock() + timedelta(days=self.retention_days)).replace(microsecond=0)
            try:
                self._client.put_object(
                    Bucket=self.bucket, Key=key, Body=data, ContentType="text/plain; charset=utf-8",
                    ChecksumAlgorithm="SHA256", IfNoneMatch="*",
                    ObjectLockMode=COMPLIANCE, ObjectLockRetainUntilDate=written_until)
            except ClientError as error:
                if _code(error) != "PreconditionFailed":  # else someone wrote it meanwhile: compare below
                    raise AnchorError(f"{self.name}: writing {key} failed: {_code(error)}: {error}") from error
            except BotoCoreError as error:
                raise AnchorError(f"{self.name}: writing {key} failed: {error}") from error
            held = self._held(key)
            if not held:
                raise AnchorError(f"{self.name}: {key} is not readable after writing it")
        version = self._one(checkpoint.size, held, data)
        self._check_lock(key, version, written_until)
        return f"s3://{self.bucket}/{key}?versionId={version.version_id}"

    def _check_lock(self, key: str, version: _Version, requested: datetime | None) -> None:
        """The version must be under COMPLIANCE retention, until at least what we asked for (or,
        for a version already there, until some time in the future)."""
        floor = requested if requested is not None else self._clock()
        until = version.retain_until
        if version.mode != COMPLIANCE or until is None or until < floor:
            raise AnchorConfigError(f"{self.name}: {key} version {version.version_id} is not locked as required "
                                    f"(mode {version.mode}, retain until {until}; wanted {COMPLIANCE} until at "
                                    f"least {floor.isoformat()})")

    def fetch(self, size: int) -> AnchoredCheckpoint | None:
        held = self._held(self._key(size))
        if not held:
            return None
        return AnchoredCheckpoint(self.origin, size, self._one(size, held).data.decode("utf-8", "replace"))

    def _checkpoint(self, key: str, ids: list[str]) -> AnchoredCheckpoint:
        size = int(key[len(self._folder):])
        held = [self._read(key, version_id) for version_id in ids]
        return AnchoredCheckpoint(self.origin, size, self._one(size, held).data.decode("utf-8", "replace"))

    def _keys(self) -> Iterator[tuple[str, list[str]]]:
        """Our checkpoint keys (20-digit names, so key order is size order) with their versions."""
        for key, ids in self._listed(self._folder):
            suffix = key[len(self._folder):]
            if len(suffix) == _DIGITS and suffix.isascii() and suffix.isdigit():
                yield key, ids

    def latest(self) -> AnchoredCheckpoint | None:
        last = None
        for last in self._keys():
            pass
        return None if last is None else self._checkpoint(*last)

    def checkpoints(self) -> Iterator[AnchoredCheckpoint]:
        for key, ids in self._keys():
            yield self._checkpoint(key, ids)
