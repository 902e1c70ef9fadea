"""Pointing boto3's standard chain at the test S3 server."""

from __future__ import annotations


def s3_environment(server) -> dict[str, str]:
    """Environment for boto3's standard chain to find the test server (and never EC2 metadata)."""
    return {**server.environment(), "AWS_EC2_METADATA_DISABLED": "true"}
