"""Build the anchors the settings configure: zero or more of Postgres, S3 and a local directory.

The drivers are imported only when configured (boto3 alone takes ~0.3 s to import). Building an
anchor makes no network call: an anchor that is down must not stop the appliance from starting;
the outbox finds out when it publishes.
"""

from appliance.anchors.base import Anchor
from appliance.core.errors import InvalidInput
from appliance.settings import Settings, SettingsError


def build_anchors(settings: Settings) -> tuple[Anchor, ...]:
    """The configured anchors for `settings.origin`, in a fixed order: postgres, s3, dir."""
    anchors: list[Anchor] = []
    if settings.anchor_postgres_dsn is not None:
        from appliance.anchors.postgres import PostgresAnchor

        try:
            anchors.append(PostgresAnchor(settings.anchor_postgres_dsn, origin=settings.origin,
                                          table=settings.anchor_postgres_table))
        except InvalidInput as error:
            raise SettingsError("RUNLOG_ANCHOR_POSTGRES_DSN", str(error)) from None
    if settings.anchor_s3_bucket is not None:
        from appliance.anchors.s3 import S3Anchor

        anchors.append(S3Anchor(settings.anchor_s3_bucket, origin=settings.origin, prefix=settings.anchor_s3_prefix,
                                endpoint=settings.anchor_s3_endpoint, region=settings.anchor_s3_region,
                                retention_days=settings.anchor_s3_retention_days))
    if settings.anchor_dir is not None:
        from appliance.anchors.localdir import LocalDirAnchor

        anchors.append(LocalDirAnchor(settings.anchor_dir, origin=settings.origin))
    return tuple(anchors)
