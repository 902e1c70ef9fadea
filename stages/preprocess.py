"""DVC stage `preprocess`: raw dataset -> data/processed/{train,val,test} + metrics/data.json."""

from posevit.core.config import load_params
from posevit.core.entrypoint import run_stage, write_json
from posevit.core.paths import DATA_METRICS, PROCESSED_DIR, SAMPLES_PLOT
from posevit.core.precision import check_hardware
from posevit.data.prepare import prepare_data
from posevit.data.preview import save_contact_sheet
from posevit.data.store import save_splits
from posevit.data.summary import format_table, summarise


def main() -> None:
    cfg = load_params()
    check_hardware(cfg.trainer)  # before the data work: the train stage would stop on it anyway
    prepared = prepare_data(cfg.data)
    save_splits(prepared.splits, PROCESSED_DIR)
    summary = summarise(prepared, cfg.data.name)
    write_json(DATA_METRICS, summary)
    print(format_table(summary))
    save_contact_sheet(prepared.splits["train"], SAMPLES_PLOT)


if __name__ == "__main__":
    run_stage(main)
