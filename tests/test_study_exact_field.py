"""Which exact-set field a pruning study's rows are read with: strict, else the lenient one."""

from __future__ import annotations

import pytest

from ptlib.experiments.pruning_study import StudyResult
from ptlib.experiments.study_report import METRIC_LABELS, curve, exact_set_field


def _study(**exact) -> StudyResult:
    rows = [{"model": "vit", "backbone": "vit", "seed": 0, "trained_with": "none",
             "method": "none", "placement": "memory", "ratio": 0.0, "split": "test",
             "cider": 1.0, "tokens_kept": 36, **exact}]
    return StudyResult(rows=rows, models={"vit": {"tokens": 36, "runs": [0]}})


def test_strict_rows_are_read_strict_and_stored_lenient_rows_are_named_lenient():
    assert exact_set_field(_study(exact_set=0.4, exact_set_lenient=0.5)) == "exact_set"
    old = _study(exact_set_lenient=0.5)
    field = exact_set_field(old)
    assert field == "exact_set_lenient" and "lenient" in METRIC_LABELS[field]
    assert curve(old, "vit", "none", field)[0].mean == 0.5
    with pytest.raises(ValueError, match="neither"):
        exact_set_field(_study())


def test_the_field_can_be_read_for_some_models_only():
    old, new = _study(exact_set_lenient=0.5), _study(exact_set=0.4, exact_set_lenient=0.5)
    new.rows[0]["model"] = "vit_pretrained"
    both = StudyResult(rows=old.rows + new.rows, models={**old.models, **new.models})
    assert exact_set_field(both) == "exact_set_lenient"  # one model predates strict
    assert exact_set_field(both, models=["vit_pretrained"]) == "exact_set"
    with pytest.raises(ValueError, match="neither"):
        exact_set_field(both, models=["convnext"])
