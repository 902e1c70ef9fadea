"""Serve a posevit model to people and programs (`posevit serve`, `make serve`, `python app.py`).

    posevit serve                          the registry's latest model, else the local models/ bundle
    posevit serve --model s3://B/P/N@<ver>  one published version in any S3 registry (verified before it loads)
    posevit serve --model s3://B/P/N:latest its newest complete version
    posevit serve --model s3://B/P/N:production --follow 30
                                           the version an alias names, polled every 30 s and swapped in
    posevit serve --model registry:<ver>   inside the project: the registry push.* names
    posevit serve --model dvc:<rev>        models/ as committed at a git revision
    posevit serve --model models/          a bundle folder

One uvicorn process: the page at /, the JSON API under /v1 (OpenAPI docs at /docs), the
replaced system's POST /api/v1/pose_classifier, /health/live, /health/ready and /metrics.
Every classification goes through one micro-batcher. Safe by default: binds 127.0.0.1,
API keys (POSEVIT_API_KEYS or serve.api_keys_file) make the API require a bearer key and
the page a login, bodies and pixels are capped before decoding, no URL is ever fetched,
weights are safetensors (no pickles).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import urllib.error
import urllib.request

from posevit.core.config import ServeConfig
from posevit.core.entrypoint import CommandParser, run_command, setup_logging
from posevit.serve.settings import add_setting_flags, load_settings

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home (and no internet here)

log = logging.getLogger("posevit.serve")


def parse_args(argv: list[str] | None = None) -> tuple[bool, ServeConfig]:
    """(healthcheck, settings); a bad flag or setting stops here with one line, exit 2."""
    parser = CommandParser(
        prog="posevit serve",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    add_setting_flags(parser)
    parser.add_argument(
        "--healthcheck",
        action="store_true",
        help="exit 0 if the server on 127.0.0.1:PORT is ready (/health/ready), else 1 (the Docker HEALTHCHECK)",
    )
    args = parser.parse_args(argv)
    return args.healthcheck, load_settings(vars(args))


def healthcheck(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=5) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError):
        return 1


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    return run_command(lambda: serve(argv))


def serve(argv: list[str] | None) -> int:
    check_only, settings = parse_args(argv)
    if check_only:
        return healthcheck(settings.port)
    from posevit.core.paths import cache_root
    from posevit.infer.loading import open_model
    from posevit.serve.api import ApiKeys

    keys = ApiKeys.load(settings.api_keys_file)
    pointer = None
    if settings.follow is not None:  # a model that names no alias fails here, before anything loads
        from posevit.serve.follow import ModelFollower, followed_pointer

        pointer = followed_pointer(settings)
    served, predictor = open_model(settings, "serve.device")

    import gradio as gr
    import uvicorn

    from posevit.serve.api import create_api
    from posevit.serve.examples import write_examples
    from posevit.serve.page import build_page
    from posevit.serve.service import InferenceService

    service = InferenceService(predictor, served, settings)
    if pointer is not None:
        service.follower = ModelFollower(service, pointer)
    examples_dir = cache_root() / "examples"
    examples = write_examples(examples_dir, image_size=predictor.input_size[0])
    page = build_page(service, examples).queue(default_concurrency_limit=settings.max_batch_size)
    user, password = os.environ.get("POSEVIT_USER"), os.environ.get("POSEVIT_PASSWORD")

    def page_login(given_user: str, given_password: str) -> bool:
        """Any user name with an API key as the password, or POSEVIT_USER / POSEVIT_PASSWORD."""
        by_user = bool(user and password) and (given_user, given_password) == (user, password)
        return by_user or keys.valid(given_password)

    app = gr.mount_gradio_app(
        create_api(service, keys),
        page,
        path="/",
        auth=page_login if keys.enabled or (user and password) else None,
        max_file_size=service.limits.max_file_bytes,
        allowed_paths=[str(examples_dir)],
        show_error=True,
        footer_links=["api"],
        ssr_mode=False,
    )
    log.info(
        "serving %s version %s from %s%s on http://%s:%d (API docs at /docs; %s)",
        predictor.model_name,
        served.version,
        served.source,
        f", following {pointer.uri} every {settings.follow:g} s" if pointer else "",
        settings.host,
        settings.port,
        f"{len(keys)} API key(s) required" if keys.enabled else "no API keys: open to anyone who can connect",
    )
    from posevit.serve.access_log import log_config

    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        log_config=log_config(),  # no credentials from a URL's query in the access log
        timeout_graceful_shutdown=5,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
