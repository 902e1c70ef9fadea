"""Publishing: the quality gate over test metrics, the S3 client and the versioned model registry."""
