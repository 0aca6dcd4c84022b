"""Evaluation protocol: per-AU F1 / classification rate on test rows, mean rows, k-fold means, baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from au_transfer.evaluation import (
    EvaluationError,
    always_present,
    au_metrics,
    fold_groups,
    fold_means,
    merge_predictions,
    summarize,
)


def _pred(au, labels, preds, which="test", subject="SN001"):
    n = len(labels)
    return pd.DataFrame({"subject": subject, "frame": np.arange(1, n + 1), "au": au, "set": which,
                         "score": np.asarray(preds, float) - 0.5, "pred": preds, "label": labels, "face": 1})


def _manual_f1(y, p):
    y, p = np.asarray(y), np.asarray(p)
    tp = int(((y == 1) & (p == 1)).sum())
    fp = int(((y == 0) & (p == 1)).sum())
    fn = int(((y == 1) & (p == 0)).sum())
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def test_per_au_metrics_and_means_on_test_rows_only():
    rng = np.random.default_rng(0)
    parts, truth = [], {}
    for au in (1, 5, 12, 15):
        y = rng.integers(0, 2, 50)
        p = np.where(rng.random(50) < 0.7, y, 1 - y)
        parts.append(_pred(au, y, p))
        parts.append(_pred(au, 1 - y, p, which="val"))  # validation rows must not count
        truth[au] = (_manual_f1(y, p), float((y == p).mean()), int(y.sum()))
    m = au_metrics(pd.concat(parts), model="m", split="s")
    assert list(m.columns) == ["model", "split", "au", "f1", "accuracy", "n_pos", "n_neg", "n_labelled", "n_face",
                               "invalid_frames"]
    per = m.set_index("au")
    for au, (f1, acc, npos) in truth.items():
        assert per.loc[str(au), "f1"] == pytest.approx(f1)
        assert per.loc[str(au), "accuracy"] == pytest.approx(acc)
        assert per.loc[str(au), "n_pos"] == npos and per.loc[str(au), "n_neg"] == 50 - npos
    assert per.loc["mean", "f1"] == pytest.approx(np.mean([v[0] for v in truth.values()]))
    assert per.loc["mean", "n_pos"] == sum(v[2] for v in truth.values())
    # 4 AUs: neither DISFA's 12 nor the standard 8 are all evaluated, so no mean row claims to average them
    assert "mean12" not in per.index and "mean8" not in per.index


def _all_aus(aus, seed=0):
    rng = np.random.default_rng(seed)
    parts, f1 = [], {}
    for au in aus:
        y = rng.integers(0, 2, 40)
        p = np.where(rng.random(40) < 0.7, y, 1 - y)
        parts.append(_pred(au, y, p))
        f1[au] = _manual_f1(y, p)
    return pd.concat(parts), f1


def test_mean_rows_name_what_they_average():
    """mean = every evaluated AU; mean12 / mean8 only when all of DISFA's 12 / the standard 8 are evaluated."""
    from au_transfer import DISFA_AUS, STANDARD_AUS

    pred, f1 = _all_aus(STANDARD_AUS)  # the 3-fold protocol's 8 AUs
    per = au_metrics(pred).set_index("au")
    assert per.loc["mean", "f1"] == pytest.approx(np.mean(list(f1.values())))
    assert per.loc["mean8", "f1"] == pytest.approx(per.loc["mean", "f1"])
    assert "mean12" not in per.index, "an 8-AU mean labelled mean12"
    pred, f1 = _all_aus(DISFA_AUS)
    per = au_metrics(pred).set_index("au")
    assert per.loc["mean12", "f1"] == pytest.approx(np.mean(list(f1.values())))
    assert per.loc["mean12", "f1"] == pytest.approx(per.loc["mean", "f1"])
    assert per.loc["mean8", "f1"] == pytest.approx(np.mean([f1[a] for a in STANDARD_AUS]))
    pred, _ = _all_aus([a for a in DISFA_AUS if a != 26])  # 11 of the 12
    assert "mean12" not in set(au_metrics(pred)["au"])


def test_requested_au_without_rows_and_bad_values_are_errors():
    df = _pred(1, [0, 1, 1], [0, 1, 0])
    with pytest.raises(EvaluationError, match=r"AU\(s\) \[12\]"):
        au_metrics(df, aus=[1, 12], name="p.csv")
    bad = df.copy()
    bad.loc[1, "pred"] = 2
    with pytest.raises(EvaluationError, match=r"p\.csv: subject SN001 frame 2 AU1: pred=2 is not 0/1"):
        au_metrics(bad, name="p.csv")
    with pytest.raises(EvaluationError, match="appears twice"):
        au_metrics(pd.concat([df, df]), name="p.csv")
    with pytest.raises(EvaluationError, match="missing column"):
        au_metrics(df.drop(columns="label"))


def test_always_present_baseline():
    y = np.array([1, 0, 0, 0, 1, 0, 0, 0, 0, 0])
    base = always_present(_pred(4, y, np.zeros(10, int)))
    m = au_metrics(base).set_index("au")
    n_pos, n = y.sum(), len(y)
    assert m.loc["4", "f1"] == pytest.approx(2 * n_pos / (n_pos + n))  # precision n_pos/n, recall 1
    assert m.loc["4", "accuracy"] == pytest.approx(n_pos / n)


def test_merge_predictions_checks_aus():
    a, b = _pred(1, [0, 1], [0, 1]), _pred(2, [1, 1], [0, 1])
    merged = merge_predictions([b, a], aus=[1, 2])
    assert len(merged) == 4 and merged["au"].tolist() == [1, 2, 1, 2]
    with pytest.raises(EvaluationError, match=r"AU\(s\) \[4\]"):
        merge_predictions([a, b], aus=[1, 2, 4], name="m.csv")


def test_fold_groups_and_means():
    assert fold_groups(["fold1", "fold2", "fold3", "paper"]) == {"3fold_mean": ["fold1", "fold2", "fold3"]}
    assert fold_groups(["paper"]) == {}
    rows = []
    for k, f1 in ((1, 0.2), (2, 0.4), (3, 0.9)):
        rows.append(dict(model="m", split=f"fold{k}", au="1", f1=f1, accuracy=f1 / 2, n_pos=k, n_neg=10))
    rows.append(dict(model="only1", split="fold1", au="1", f1=0.5, accuracy=0.5, n_pos=1, n_neg=1))
    df = pd.DataFrame(rows)
    fm = fold_means(df)
    assert len(fm) == 1  # 'only1' is not in every fold: no mean
    r = fm.iloc[0]
    assert r["split"] == "3fold_mean" and r["f1"] == pytest.approx(0.5) and r["n_pos"] == 6 and r["n_neg"] == 30
    s = summarize([df])
    assert (s["split"] == "3fold_mean").sum() == 1 and len(s) == len(df) + 1


def test_the_table_modules_do_not_import_scikit_learn():
    """The many small jobs that only merge or read prediction and intensity tables do not pay scikit-learn's ~1.5 s
    import (au_metrics imports it when it scores)."""
    import subprocess
    import sys

    code = ("import sys, au_transfer.evaluation, au_transfer.intensity.tables, au_transfer.intensity.metrics; "
            "print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
