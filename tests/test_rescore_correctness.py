"""scripts/rescore_correctness.py: re-scores what stored records keep, touches nothing else."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from ptlib.metrics.captions import CaptionScorer

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "rescore_correctness.py"
SECTION = {"dataset": "shapes", "img_size": 64, "n_train": 12, "n_val": 0, "n_test": 6,
           "n_compositional": 0, "max_objects": 4, "seed": 0}


def _script():
    spec = importlib.util.spec_from_file_location("rescore_correctness", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_captioner_record_gets_strict_correctness_and_training_floor(tmp_path):
    rescore = _script()
    data = rescore.Dataset(tmp_path / "data")
    references = data.references(SECTION, "test")
    captions = {str(i): refs[0] for i, refs in references.items()}
    record = {
        "config": {"config": {"data": SECTION}},
        "result": {"evaluation": {"test": {
            "BLEU-4": 0.123456789, "captions": captions,
            "correctness": {"exact_set_accuracy": 0.0, "exact_set_accuracy_strict": 0.0},
            "folds": {"floor": {"caption": "old"}, "model": {"CIDEr-D": 1.5},
                      "ceiling": {"CIDEr-D": 2.5}, "of_ceiling": {"CIDEr-D": 0.6}},
        }}},
    }
    path = tmp_path / "captioners" / "run" / "abc.json"
    path.parent.mkdir(parents=True)
    path.write_text(rescore._dump(record))
    with CaptionScorer(("BLEU", "CIDEr")) as scorer:
        new, done = rescore.rescore_record(path, data, scorer)
    test = new["result"]["evaluation"]["test"]
    assert done == ["test correctness", "test floor"]
    assert test["correctness"]["exact_set_accuracy"] == 1.0  # references are exact
    assert test["correctness"]["exact_set_accuracy_lenient"] == 1.0
    assert "exact_set_accuracy_strict" not in test["correctness"]
    floor = test["folds"]["floor"]
    assert floor["caption"] == floor["choice"]["candidates"][0]["caption"] != "old"
    # everything else is as it was
    assert test["BLEU-4"] == 0.123456789 and test["captions"] == captions
    assert test["folds"]["model"] == {"CIDEr-D": 1.5}
    assert test["folds"]["of_ceiling"] == {"CIDEr-D": 0.6}
    assert "rescore" in new["rescored"]


def test_study_rows_without_captions_keep_their_number_under_the_lenient_name(tmp_path):
    rescore = _script()
    record = {"config": {}, "result": {"rows": [{"exact_set": 0.25, "cider": 1.0}]}}
    path = tmp_path / "pruning_study" / "vit_s0" / "abc.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))
    new, done = rescore.rescore_record(path, rescore.Dataset(tmp_path), None)
    assert new["result"]["rows"] == [{"exact_set_lenient": 0.25, "cider": 1.0}]
    assert len(done) == 1
    path.write_text(rescore._dump(new))
    assert rescore.rescore_record(path, rescore.Dataset(tmp_path), None)[1] == []
