"""DVC stage `preprocess`: raw dataset -> data/processed/{train,val,test} + metrics/data.json."""

from pathlib import Path

from posevit.config import load_params
from posevit.data.prepare import prepare_data
from posevit.data.preview import save_contact_sheet
from posevit.data.store import PROCESSED_DIR, save_splits
from posevit.data.summary import format_table, summarise
from posevit.stage import run_stage, write_json

METRICS_FILE = Path("metrics/data.json")
SAMPLES_PLOT = Path("plots/demo_samples.png")


def main() -> None:
    cfg = load_params()
    prepared = prepare_data(cfg.data)
    save_splits(prepared.splits, PROCESSED_DIR)
    summary = summarise(prepared, cfg.data.name)
    write_json(METRICS_FILE, summary)
    print(format_table(summary))
    save_contact_sheet(prepared.splits["train"], SAMPLES_PLOT)


if __name__ == "__main__":
    run_stage(main)
