"""DVC stage `push`: publish models/ (+ exports/, test metrics and report) to the S3 registry if it passes the bar."""

from posevit.core.config import load_params
from posevit.core.entrypoint import run_stage, write_json
from posevit.core.paths import PUSH_RECEIPT
from posevit.publish.push import push


def main() -> None:
    receipt = push(load_params().push)
    write_json(PUSH_RECEIPT, receipt)


if __name__ == "__main__":
    run_stage(main)
