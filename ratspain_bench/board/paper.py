"""The paper's reported Table 3 (leave-one-rat-out on RatsPain), from `paper_table3.json` (a copy of
`table3_loro` and `note` in the shared `ratspain_paper.json`; a test keeps the two equal).

Reference rows only: shown beside reproduced results, never ranked with them. F1 is a fraction and
accuracy a percentage, as printed in the paper; LORO is the confusion matrix pooled over the six folds.
"""
import json
from pathlib import Path

_DATA = json.loads((Path(__file__).with_name("paper_table3.json")).read_text())
SOURCE: str = _DATA["source"]
NOTE: str = _DATA["note"]
#: method name -> {"label", "per_rat": {rat: {"f1", "accuracy_pct"}}, "loro_pooled": {"f1", "accuracy_pct"}}
TABLE3_LORO: dict = _DATA["table3_loro"]


def is_ratspain_like(dataset_name: str) -> bool:
    """The paper's rows are a reference only for RatsPain itself or its replica (names `ratspain`, `ratspain-replica`)."""
    key = "".join(ch for ch in dataset_name.lower() if ch.isalnum())
    return key in ("ratspain", "ratspainreplica")
