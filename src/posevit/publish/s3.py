"""One way to talk to S3 (AWS or a compatible server) and one way to explain its failures.

Credentials come from boto3's standard chain (environment, shared credentials/config files,
AWS_PROFILE, instance roles), and so do the region (AWS_REGION) and the endpoint: one of None
means AWS itself, unless the environment or the profile names one (AWS_ENDPOINT_URL_S3,
AWS_ENDPOINT_URL, `endpoint_url` in the AWS config file). Every S3 access of the project, the
push stage's and a served `s3://` model's alike, goes through `make_client`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from posevit.core.errors import PosevitError

if TYPE_CHECKING:  # boto3 builds its clients at run time; the stubs give them their types
    from mypy_boto3_s3 import S3Client

CREDENTIALS_HELP = (
    "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE (`aws configure`); "
    "for the local SeaweedFS run `make s3` and then `source .s3/env`"
)


class S3Error(PosevitError):
    """S3 refused or could not be reached; the message says which and what to do."""


def make_client(endpoint_url: str | None = None, region: str | None = None, retries: int = 3) -> S3Client:
    """An S3 client from the standard credential chain; fails at once if there are no credentials."""
    session = boto3.Session(region_name=region)
    if session.get_credentials() is None:
        raise S3Error(f"no AWS credentials found: {CREDENTIALS_HELP}")
    # An S3-compatible server (SeaweedFS, MinIO) behind a plain host name has no per-bucket DNS names.
    compatible = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    config = Config(
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": retries, "mode": "standard"},
        s3={"addressing_style": "path"} if compatible else None,
    )
    return session.client("s3", endpoint_url=endpoint_url, config=config)


def describe_endpoint(client: S3Client) -> str:
    return client.meta.endpoint_url


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_missing(exc: ClientError) -> bool:
    return error_code(exc) in {"404", "NoSuchKey", "NotFound"}


@contextmanager
def s3_errors(client: S3Client, action: str, bucket: str) -> Iterator[None]:
    """Turn botocore exceptions raised while doing `action` into an S3Error with a clear message."""
    endpoint = describe_endpoint(client)
    try:
        yield
    except NoCredentialsError:
        raise S3Error(f"no AWS credentials found while {action}: {CREDENTIALS_HELP}") from None
    except (EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError, ReadTimeoutError) as exc:
        raise S3Error(
            f"cannot reach S3 at {endpoint} while {action} ({type(exc).__name__}); is the server up? "
            f"For the local one run `make s3`; otherwise check push.endpoint_url or AWS_ENDPOINT_URL_S3"
        ) from None
    except ClientError as exc:
        code = error_code(exc)
        if code in {"NoSuchBucket"} or (code == "404" and "bucket" in action):
            raise S3Error(
                f"bucket {bucket!r} does not exist at {endpoint}: create it "
                f"(`make s3` creates the local ones) or fix push.bucket (or the model URI's bucket)"
            ) from None
        if code in {"InvalidAccessKeyId"}:
            raise S3Error(
                f"S3 at {endpoint} does not know the access key id while {action}: {CREDENTIALS_HELP}"
            ) from None
        if code in {"SignatureDoesNotMatch", "403", "AccessDenied", "InvalidToken", "ExpiredToken"}:
            raise S3Error(
                f"S3 at {endpoint} rejected the credentials while {action} "
                f"({code}): the access key id or the secret key is wrong, or the key may not use bucket {bucket!r}; "
                f"{CREDENTIALS_HELP}"
            ) from None
        message = exc.response.get("Error", {}).get("Message", "")
        raise S3Error(f"S3 error {code} at {endpoint} while {action}: {message}") from None
    except BotoCoreError as exc:
        raise S3Error(f"S3 client error at {endpoint} while {action}: {type(exc).__name__}") from None
