"""Serve a posevit model in a Gradio page (`posevit serve`, `python app.py`, `make app`).

    posevit serve                         the registry's latest model, else the local models/ bundle
    posevit serve --model registry:<ver>  one published version (verified before it loads)
    posevit serve --model dvc:<rev>       models/ as committed at a git revision
    posevit serve --model models/         a bundle folder

Safe by default: binds 127.0.0.1 (--host / POSEVIT_HOST to change), login when POSEVIT_USER
and POSEVIT_PASSWORD are set, uploads capped, no URL fetching, safetensors only (no pickles).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from posevit.core.entrypoint import setup_logging
from posevit.core.errors import PosevitError

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home (and no internet here)

log = logging.getLogger("posevit.app")
CACHE_DIR = Path(os.environ.get("POSEVIT_CACHE", Path.home() / ".cache" / "posevit"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        default=os.environ.get("POSEVIT_MODEL", "auto"),
        help="auto | registry[:version] | dvc:<rev> | <bundle folder> (default: auto)",
    )
    parser.add_argument("--host", default=os.environ.get("POSEVIT_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("POSEVIT_PORT", "7860")))
    parser.add_argument("--max-pixels", type=int, default=40_000_000, help="largest image accepted, in pixels")
    parser.add_argument("--max-file-mb", type=int, default=20, help="largest upload accepted, in MB")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--healthcheck",
        action="store_true",
        help="exit 0 if an app answers on 127.0.0.1:--port, else 1 (the Docker HEALTHCHECK)",
    )
    return parser.parse_args(argv)


def healthcheck(port: int) -> int:
    """Healthy if the page answers below 500 (401 counts: the login page is up)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            return 0 if response.status < 500 else 1
    except urllib.error.HTTPError as exc:
        return 0 if exc.code < 500 else 1
    except OSError:
        return 1


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = parse_args(argv)
    if args.healthcheck:
        return healthcheck(args.port)
    try:
        from posevit.models.bundle import load_bundle
        from posevit.serve.model_source import resolve
        from posevit.serve.predictor import Predictor

        served = resolve(args.model, CACHE_DIR)
        predictor = Predictor(load_bundle(served.bundle_dir), args.device)
    except PosevitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from posevit.serve.examples import write_examples
    from posevit.serve.page import Limits, build_app

    log.info("serving %s version %s from %s", predictor.bundle.config.model_name, served.version, served.source)
    examples = write_examples(CACHE_DIR / "examples", image_size=predictor.bundle.data_config["input_size"][-1])
    limits = Limits(max_pixels=args.max_pixels, max_file_bytes=args.max_file_mb * 2**20)
    user, password = os.environ.get("POSEVIT_USER"), os.environ.get("POSEVIT_PASSWORD")
    app = build_app(predictor, served, examples, limits)
    app.queue(default_concurrency_limit=1).launch(
        server_name=args.host,
        server_port=args.port,
        auth=(user, password) if user and password else None,
        max_file_size=limits.max_file_bytes,
        allowed_paths=[str(CACHE_DIR / "examples")],
        show_error=True,
        footer_links=["api"],
        ssr_mode=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
