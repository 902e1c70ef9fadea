"""`python app.py [--model ...]`: the same as `posevit serve` (kept for the Docker image and old habits)."""

import sys

from posevit.serve.app import main

if __name__ == "__main__":
    sys.exit(main())
