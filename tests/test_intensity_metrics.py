"""Intensity metrics: ICC(3,1), PCC, MAE, MSE against independent computations on hand-made cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from au_transfer.intensity.metrics import IntensityError, icc31, intensity_metrics, intensity_scores, pearson


def icc_anova(Y: np.ndarray) -> float:
    """ICC(3,1) from a two-way ANOVA written out cell by cell (any number of raters k), for cross-checking."""
    n, k = Y.shape
    grand = sum(sum(r) for r in Y.tolist()) / (n * k)
    ss_rows = sum(k * (sum(r) / k - grand) ** 2 for r in Y.tolist())
    ss_cols = sum(n * (sum(Y[i][j] for i in range(n)) / n - grand) ** 2 for j in range(k))
    ss_total = sum((v - grand) ** 2 for r in Y.tolist() for v in r)
    ms_rows = ss_rows / (n - 1)
    ms_err = (ss_total - ss_rows - ss_cols) / ((n - 1) * (k - 1))
    return (ms_rows - ms_err) / (ms_rows + (k - 1) * ms_err)


def icc_closed_form(p, t) -> float:
    """For two raters, ICC(3,1) = 2 cov(p, t) / (var p + var t) (sample moments)."""
    p, t = np.asarray(p, float), np.asarray(t, float)
    c = np.cov(p, t)
    return 2 * c[0, 1] / (c[0, 0] + c[1, 1])


TRUTH = np.array([0, 0, 1, 2, 3, 5, 4, 2, 0, 1], float)


def test_perfect_agreement_is_one():
    assert icc31(TRUTH, TRUTH) == pytest.approx(1.0)
    assert pearson(TRUTH, TRUTH) == pytest.approx(1.0)
    s = intensity_scores(TRUTH, TRUTH)
    assert s["mae"] == 0 and s["mse"] == 0 and s["n"] == len(TRUTH)


def test_constant_offset_is_still_one_but_costs_mae():
    pred = TRUTH + 0.5
    assert icc31(pred, TRUTH) == pytest.approx(1.0)
    s = intensity_scores(pred, TRUTH)
    assert s["mae"] == pytest.approx(0.5) and s["mse"] == pytest.approx(0.25)


def test_noise_lowers_it_and_matches_independent_computations():
    rng = np.random.default_rng(0)
    last = 1.0
    for sd in (0.3, 1.0, 3.0):
        pred = TRUTH + rng.normal(0, sd, len(TRUTH))
        icc = icc31(pred, TRUTH)
        assert icc < last
        last = icc
        assert icc == pytest.approx(icc_anova(np.column_stack([pred, TRUTH])), abs=1e-12)
        assert icc == pytest.approx(icc_closed_form(pred, TRUTH), abs=1e-12)
        assert pearson(pred, TRUTH) == pytest.approx(np.corrcoef(pred, TRUTH)[0, 1], abs=1e-12)
        s = intensity_scores(pred, TRUTH)
        assert s["mae"] == pytest.approx(np.mean(np.abs(pred - TRUTH)))
        assert s["mse"] == pytest.approx(np.mean((pred - TRUTH) ** 2))


def test_hand_computed_case():
    # p = (1, 2, 3), t = (1, 3, 2): rows means 1, 2.5, 2.5; grand 2; BMS = 2*(1+.25+.25)/2 = 1.5;
    # WSS = 0 + .5 + .5 = 1, RSS = 0, EMS = 1/2 = .5; ICC = (1.5 - .5) / (1.5 + .5) = .5
    assert icc31([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert pearson([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)


def test_constant_prediction_scores_zero_and_scaled_prediction_less_than_one():
    assert icc31(np.full(len(TRUTH), 1.3), TRUTH) == pytest.approx(0.0, abs=1e-12)
    assert pearson(np.zeros(len(TRUTH)), TRUTH) == 0.0
    half = icc31(TRUTH / 2, TRUTH)  # consistency, not correlation: a shrunk prediction is penalised
    assert 0 < half < 1 and pearson(TRUTH / 2, TRUTH) == pytest.approx(1.0)
    assert half == pytest.approx(icc_anova(np.column_stack([TRUTH / 2, TRUTH])))


def _table(values, labels, au=12, which="test"):
    n = len(labels)
    return pd.DataFrame({"subject": "SN001", "frame": np.arange(1, n + 1), "au": au, "set": which,
                         "value": values, "label": labels})


def test_intensity_metrics_per_au_and_mean_on_test_rows_only():
    t = _table(TRUTH, TRUTH)
    t2 = _table(np.full(len(TRUTH), np.nan), TRUTH, au=4)  # a skipped AU: scored as the constant 0
    v = _table(np.zeros(len(TRUTH)), TRUTH, which="val")
    m = intensity_metrics(pd.concat([t, t2, v]), "m", "s").set_index("au")
    assert m.loc["12", "icc"] == pytest.approx(1.0) and m.loc["4", "icc"] == pytest.approx(0.0)
    assert m.loc["mean", "icc"] == pytest.approx(0.5) and m.loc["mean", "n"] == 2 * len(TRUTH)
    assert m.loc["4", "mae"] == pytest.approx(TRUTH.mean())


@pytest.mark.parametrize("change, match", [
    (lambda d: d.assign(label=d["label"] + 6), "not a number in 0..5"),
    (lambda d: d.assign(set="train"), "set must be"),
    (lambda d: pd.concat([d, d]), "listed twice"),
    (lambda d: d.drop(columns="value"), "missing column"),
])
def test_bad_tables_are_refused(change, match):
    with pytest.raises(IntensityError, match=match):
        intensity_metrics(change(_table(TRUTH, TRUTH)))
