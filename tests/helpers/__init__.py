"""What several test modules share: data and image builders, a throwaway DVC project, S3 env."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
