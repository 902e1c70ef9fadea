"""Development tools outside the runtime path: the local S3 server (`make s3`) for demos and tests."""
