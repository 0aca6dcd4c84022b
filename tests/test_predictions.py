"""The prediction table (au_transfer.predictions): one definition for the classifiers, fine-tuning, metrics and
ensembles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from au_transfer import ensemble, evaluation
from au_transfer.predictions import (
    PRED_COLUMNS,
    PredictionError,
    check_predictions,
    empty_predictions,
    prediction_rows,
    read_predictions,
)


def _rows(**over):
    df = prediction_rows(np.array(["SN001"] * 3), np.array([1, 2, 3]), 12, "test", np.array([0.2, np.nan, 0.9]),
                         np.array([0, 0, 1]), np.array([0, 1, 1]))
    for k, v in over.items():
        df[k] = v
    return df


def test_rows_have_the_columns_in_order_and_check_normalises():
    df = _rows()
    assert list(df.columns) == PRED_COLUMNS and list(empty_predictions().columns) == PRED_COLUMNS
    assert (df["au"] == 12).all() and (df["set"] == "test").all()
    out = check_predictions(df.assign(extra=1), "m.csv")
    assert list(out.columns) == PRED_COLUMNS and out["pred"].dtype == np.int8 and out["frame"].dtype == np.int64
    assert np.isnan(out["score"].iloc[1])  # an empty score (a skipped AU) is allowed


@pytest.mark.parametrize("over,match", [
    ({"pred": [0, 2, 1]}, r"m\.csv: subject SN001 frame 2 AU12: pred=2 is not 0/1"),
    ({"score": [0.1, np.inf, 0.3]}, r"m\.csv: subject SN001 frame 2 AU12: score inf is not a finite number"),
    ({"set": ["test", "train", "test"]}, r"m\.csv: subject SN001 frame 2: set 'train' is not val or test"),
    ({"frame": [1, 1, 3]}, r"m\.csv: subject SN001 frame 1 AU12 \(test\) appears twice"),
])
def test_bad_tables_name_the_file_subject_frame_and_au(over, match):
    with pytest.raises(PredictionError, match=match):
        check_predictions(_rows(**over), "m.csv")


def test_callers_keep_their_error_classes(tmp_path):
    bad = _rows(label=[0, 1, 3])
    with pytest.raises(evaluation.EvaluationError, match="label=3"):
        evaluation.check_predictions(bad, "p.csv")
    with pytest.raises(ensemble.EnsembleError, match="label=3"):
        ensemble.check_predictions(bad, "p.csv")
    with pytest.raises(PredictionError, match=r"missing column\(s\) \['label'\]"):
        check_predictions(bad.drop(columns="label"))
    with pytest.raises(ensemble.EnsembleError, match="does not exist"):
        ensemble.read_predictions(tmp_path / "none.csv")
    _rows().to_csv(tmp_path / "p.csv", index=False)
    pd.testing.assert_frame_equal(read_predictions(tmp_path / "p.csv"), check_predictions(_rows()))
