"""The shared label-table reader, balancing rule and subject-overlap check (au_transfer.labels, au_transfer.config),
used by both the classifiers and fine-tuning."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from au_transfer.config import ConfigError, check_subject_exclusive
from au_transfer.labels import LabelError, balance_indices, read_label_table


def _write(path, **cols):
    pd.DataFrame(cols).to_csv(path, index=False)
    return path


def test_read_label_table_binarises_with_the_threshold(tmp_path):
    p = _write(tmp_path / "SN001.csv", frame=[1, 2, 3, 5], AU1=[0, 1, 2, 5], AU12=[3, 0, 0, 4], AU4=[9, 9, 9, 9])
    t = read_label_table(p, [1, 12], 2)
    assert list(t.columns) == ["frame", "AU1", "AU12"]  # only the requested AUs: AU4 is never read
    assert t["frame"].tolist() == [1, 2, 3, 5] and t["frame"].dtype == np.int64
    assert t["AU1"].tolist() == [0, 0, 1, 1] and t["AU12"].tolist() == [1, 0, 0, 1] and t["AU1"].dtype == np.int8


@pytest.mark.parametrize("cols,match", [
    ({"frame": [1, 2, 2], "AU1": [0, 1, 1]}, r"SN009\.csv \(subject SN009\), frame 2: frame listed twice \(lines 3 and 4\)"),
    ({"frame": [1, 2.5, 3], "AU1": [0, 1, 1]}, r"SN009\.csv \(subject SN009\): frame number '2\.5' is not an integer \(line 3\)"),
    ({"frame": [1, 2, 3], "AU1": [0, "x", 1]}, r"SN009\.csv \(subject SN009\), frame 2: AU1 intensity 'x' is not a number in 0\.\.5 \(line 3\)"),
    ({"frame": [1, 2, 3], "AU1": [0, 1, -1]}, r"frame 3: AU1 intensity '-1'.*\(line 4\)"),
    ({"frame": [1, 2, 3], "AU2": [0, 1, 1]}, r"SN009\.csv \(subject SN009\): missing column\(s\) \['AU1'\]; columns are"),
])
def test_bad_label_tables_name_file_subject_frame_and_line(tmp_path, cols, match):
    p = _write(tmp_path / "SN009.csv", **cols)
    with pytest.raises(LabelError, match=match):
        read_label_table(p, [1], 2, subject="SN009")


def test_label_errors_use_the_callers_error_class(tmp_path):
    class MyError(ValueError):
        pass

    with pytest.raises(MyError, match=r"nothing\.csv: cannot read the label table"):
        read_label_table(tmp_path / "nothing.csv", [1], 2, error=MyError)


def test_balance_indices_draw_when_equal_only_moves_the_generator():
    y = np.array([1, 0, 1, 0, 0, 1])  # as many positives as negatives: every frame is kept either way
    a, b = np.random.default_rng(0), np.random.default_rng(0)
    assert balance_indices(y, a).tolist() == balance_indices(y, b, draw_when_equal=False).tolist() == list(range(6))
    assert a.random() != b.random()  # the classifiers' draw advanced the generator, fine-tuning's rule did not
    y = np.array([1, 0, 0, 0, 1, 0, 0])  # unequal: the same single draw of the majority class either way
    a, b = np.random.default_rng(4), np.random.default_rng(4)
    assert balance_indices(y, a).tolist() == balance_indices(y, b, draw_when_equal=False).tolist()
    assert a.random() == b.random()
    assert len(balance_indices(np.zeros(5), a)) == 0


def test_check_subject_exclusive_names_split_subjects_and_sets():
    check_subject_exclusive(["SN001"], ["SN002"], ["SN003"])
    with pytest.raises(ConfigError, match=r"split 'fold1': subject\(s\) \['SN002'\] in both val and test: splits must "
                                          "be subject-exclusive"):
        check_subject_exclusive(["SN001"], ["SN002"], ["SN002", "SN003"], split="fold1")
    with pytest.raises(KeyError, match=r"\['SN001'\] in both train and val"):
        check_subject_exclusive(["SN001"], ["SN001"], [], error=KeyError)


def test_recordings_of_one_subject_in_two_sets_are_refused():
    """Jobs get recordings (BP4D tasks F001.T1, F001.T2): two recordings of one subject in two sets leak identity."""
    check_subject_exclusive(["F001.T1", "F001.T2"], ["F002.T1"], ["F003.T1"])  # one subject, one set: fine
    with pytest.raises(ConfigError, match=r"\['F001'\] in both train and test"):
        check_subject_exclusive(["F001.T1"], [], ["F001.T2"])


def test_unknown_labels_and_occurrence_columns(tmp_path):
    """An empty cell is unknown (-1, never a negative); AU{n}_c occurrence codes win over the intensity threshold."""
    path = tmp_path / "F001.T1.csv"
    pd.DataFrame({"frame": [1, 2, 3, 4], "source_frame": [10, 11, 12, 13], "AU6": [0, 3, None, 1],
                  "AU6_c": [0, 1, None, 1], "AU1_c": [1, None, 0, 1], "AU2": [None, 5, 2, 1]}).to_csv(path, index=False)
    t = read_label_table(path, [1, 2, 6], threshold=2)
    assert t["AU1"].tolist() == [1, -1, 0, 1]
    assert t["AU2"].tolist() == [-1, 1, 1, 0]
    assert t["AU6"].tolist() == [0, 1, -1, 1]  # intensity 1 < threshold, but coded present
    pd.DataFrame({"frame": [1, 2], "AU1_c": [1, 2]}).to_csv(path, index=False)
    with pytest.raises(LabelError, match=r"frame 2: AU1_c occurrence '2' is not a number in 0\.\.1 \(line 3\)"):
        read_label_table(path, [1], threshold=2)
