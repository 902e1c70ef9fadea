"""DVC stage `push`: publish models/ (+ test metrics and report) to the S3 registry if it passes the bar.

Failing the bar is not an error: the receipt metrics/push.json says what was measured and why
nothing was published. An S3 problem is an error (exit 2) that leaves latest.json untouched.
"""

import json
import logging
import os
from pathlib import Path

from posevit.bundle import MODELS_DIR, read_bundle_config
from posevit.config import load_params
from posevit.errors import ConfigError
from posevit.gate import evaluate_conditions
from posevit.hashing import hash_directory
from posevit.registry import LATEST_FILE, ModelAddress, publish
from posevit.s3client import make_client
from posevit.stage import run_stage, write_json

TEST_METRICS = Path("metrics/test.json")
REPORT = Path("metrics/report.xlsx")
RECEIPT = Path("metrics/push.json")

log = logging.getLogger("posevit.push")


def main() -> None:
    cfg = load_params().push
    if not TEST_METRICS.exists():
        raise ConfigError(f"{TEST_METRICS} not found: run the evaluate stage first (`dvc repro evaluate`)")
    metrics = json.loads(TEST_METRICS.read_text())
    read_bundle_config(MODELS_DIR)  # a clear error if the bundle is missing or not a bundle
    results = evaluate_conditions(metrics, cfg.conditions)
    address = ModelAddress(cfg.bucket, cfg.prefix, cfg.model_name)
    version = hash_directory(MODELS_DIR)
    receipt = {"pushed": False, "version": version, "uri": None, "latest": None,
               "conditions": {r.metric: {"value": r.value, "threshold": r.threshold, "passed": r.passed}
                              for r in results}}
    for result in results:
        log.info("%s %s = %.4f (threshold %.4f)", "PASS" if result.passed else "FAIL", result.metric,
                 result.value, result.threshold)
    if not all(result.passed for result in results):
        log.info("quality bar not met: nothing published")
        write_json(RECEIPT, receipt)
        return

    experiment = os.environ.get("DVC_EXP_NAME")
    if experiment and not cfg.from_experiments:
        receipt["skipped"] = (f"DVC experiment {experiment!r}: experiments do not publish (push.from_experiments); "
                              f"promote it with `dvc exp apply {experiment}` then `dvc repro --force --single-item push`")
        log.info("passed the bar, not published: %s", receipt["skipped"])
        write_json(RECEIPT, receipt)
        return

    files = {f"{MODELS_DIR.name}/{path.relative_to(MODELS_DIR).as_posix()}": path
             for path in sorted(MODELS_DIR.rglob("*")) if path.is_file()}
    files[TEST_METRICS.as_posix()] = TEST_METRICS
    if REPORT.exists():
        files[REPORT.as_posix()] = REPORT
    client = make_client(cfg.endpoint_url, cfg.region)
    result = publish(client, address, version, files, record={"metrics": metrics})
    log.info("%s %s; %s now points to it", "already published:" if result.already_published else "published",
             result.uri, address.uri(LATEST_FILE))
    receipt.update(pushed=True, uri=result.uri, latest=address.uri(LATEST_FILE),
                   already_published=result.already_published, files=len(files))
    write_json(RECEIPT, receipt)


if __name__ == "__main__":
    run_stage(main)
