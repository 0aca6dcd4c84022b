"""The published state of the art beside ours (standard 3-fold protocols), and what the means over AUs leave out."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from au_transfer import STANDARD_AUS
from au_transfer.datasets.bp4d import BP4D_AUS, three_fold_splits
from au_transfer.datasets.disfa import PARTS as DISFA_PARTS
from au_transfer.evaluation import summarize
from au_transfer.report import (
    PROTOCOLS,
    build_report,
    figure_data,
    headline,
    match_protocol,
    sota_comparison,
    sota_results,
)

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"vgg_face-face-svm": 0.55, "cnn_f_ft-face-softmax": 0.62, "ens-fe": 0.66}


def fold_metrics(aus, folds=("fold1", "fold2", "fold3"), nan_au: int | None = None) -> pd.DataFrame:
    """Per-fold metrics tables of every model (per AU, then mean over the AUs) and their 3-fold mean rows."""
    tables = []
    for i, (model, level) in enumerate(MODELS.items()):
        for k, fold in enumerate(folds):
            rng = np.random.default_rng(10 * i + k)
            f1 = np.clip(level + rng.normal(0, 0.05, len(aus)), 0, 1)
            if nan_au is not None:
                f1[list(aus).index(nan_au)] = np.nan
            rows = [{"model": model, "split": fold, "au": str(a), "f1": f, "accuracy": 0.8, "n_pos": 5, "n_neg": 20}
                    for a, f in zip(aus, f1, strict=True)]
            rows.append({"model": model, "split": fold, "au": "mean", "f1": float(np.nanmean(f1)), "accuracy": 0.8,
                         "n_pos": 5 * len(aus), "n_neg": 20 * len(aus)})
            tables.append(pd.DataFrame(rows))
    return summarize(tables)


def disfa_splits() -> dict[str, dict[str, list[str]]]:
    out = {}
    for k in range(3):  # in ME-GraphAU's order: fold1 tests part3 ... fold3 tests part1 (any order matches)
        test = DISFA_PARTS[2 - k]
        train = [s for j, p in enumerate(DISFA_PARTS) if j != 2 - k for s in p]
        out[f"fold{k + 1}"] = {"train": train[:-3], "val": train[-3:], "test": list(test)}
    return out


def corpora_of(splits, name: str) -> dict[str, dict[str, str]]:
    return {s: {"train": name, "test": name} for s in splits}


# ------------------------------------------------------------------------------------------- the data file
def test_published_numbers_are_the_sources_and_consistent():
    p = sota_results().set_index("key")
    assert (p.loc["jaanet_bp4d", "f1"], p.loc["jaanet_disfa", "f1"]) == (60.0, 56.0)
    assert (p.loc["me_graphau_swinb_bp4d", "f1"], p.loc["me_graphau_r50_bp4d", "f1"]) == (65.5, 64.7)
    assert p.loc["me_graphau_r50_disfa", "f1"] == 63.1 and p.loc["me_graphau_swinb_disfa", "f1"] == 62.4
    assert (p.loc["fmae_iat_bp4d", "f1"], p.loc["fmae_iat_disfa", "f1"]) == (67.1, 70.1)
    assert p.loc["me_graphau_swinb_bp4d", "AU12"] == 89.2 and p.loc["fmae_iat_disfa", "AU26"] == 71.3
    au_cols = [c for c in p.columns if c.startswith("AU")]
    for key, r in p.iterrows():
        protocol = PROTOCOLS[r["protocol"]]
        aus = [int(a) for a in r["aus"].split()]
        assert aus == sorted(protocol.aus) and r["corpus"] == protocol.corpus, key
        given = [c for c in au_cols if pd.notna(r[c])]
        assert given == [f"AU{a}" for a in aus], key  # per-AU values for exactly the protocol's AUs
        # the papers' means are the means of their per-AU values, to their rounding
        assert abs(np.mean([r[c] for c in given]) - r["f1"]) <= 0.05 + 1e-9, key
        assert r["source"] and r["verified"] and r["backbone"] and r["year"], key


# --------------------------------------------------------------------------------------- protocol matching
def test_the_shipped_3fold_configs_run_the_protocols():
    for config, name, corpus in (("bp4d_3fold.yaml", "bp4d_3fold", "bp4d"), ("disfa_3fold.yaml", "disfa_3fold",
                                                                              "disfa")):
        cfg = yaml.safe_load((ROOT / "config" / config).read_text())
        split, why = match_protocol(PROTOCOLS[name], cfg["splits"], corpora_of(cfg["splits"], corpus),
                                    cfg["data"]["aus"], cfg["data"].get("threshold"))
        assert (split, why) == ("3fold_mean", ""), config
    assert match_protocol(PROTOCOLS["bp4d_3fold"], three_fold_splits(), corpora_of(range(4), "x"),
                          BP4D_AUS)[0] is None


def test_the_tiny_test_config_is_not_the_protocol():
    cfg = yaml.safe_load((ROOT / "tests" / "config_test.yaml").read_text())
    table = sota_comparison(pd.DataFrame(columns=["model", "split", "au", "f1"]), splits=cfg["splits"],
                            corpora=corpora_of(cfg["splits"], "disfa"), aus=cfg["data"]["aus"])
    assert set(table["who"]) == {"published"} and set(table["protocol"]) == set(PROTOCOLS)
    assert table["note"].str.startswith("not compared: ").all()


@pytest.mark.parametrize("change,why", [
    ("aus", "are not the protocol's 12 AUs"),
    ("extra_au", "are not the protocol's 12 AUs"),
    ("swap", "not one of the protocol's parts"),
    ("train", "trains (train + val) on other subjects"),
    ("corpus", "uses corpus 'disfa'"),
    ("two_folds", "no group of 3 fold splits"),
])
def test_no_published_row_unless_the_protocol_matches(change, why):
    splits, aus, corpora = three_fold_splits(), list(BP4D_AUS), None
    if change == "aus":
        aus = aus[:-1]
    elif change == "extra_au":  # a mean over 13 AUs is not the published mean over 12
        aus = sorted([*aus, 25])
    elif change == "swap":  # one test subject moved to the training set
        s = splits["fold1"]["test"].pop()
        splits["fold1"]["train"].append(s)
    elif change == "train":  # a training subject left out
        splits["fold2"]["train"].pop()
    elif change == "two_folds":
        del splits["fold3"]
    corpora = corpora_of(splits, "disfa" if change == "corpus" else "bp4d")
    metrics = fold_metrics(aus)
    table = sota_comparison(metrics, splits=splits, corpora=corpora, aus=aus)
    assert set(table["who"]) == {"published"} and len(table) == len(PROTOCOLS)
    note = table.set_index("protocol").loc["bp4d_3fold", "note"]
    assert note.startswith("not compared") and why in note, note
    # unchanged, the same splits do match
    if change not in ("aus", "extra_au"):
        ok = sota_comparison(fold_metrics(list(BP4D_AUS)), splits=three_fold_splits(),
                             corpora=corpora_of(three_fold_splits(), "bp4d"), aus=BP4D_AUS)
        assert set(ok["who"]) == {"published", "ours"}


def test_published_rows_beside_ours_when_the_protocol_matches():
    metrics = fold_metrics(list(BP4D_AUS))
    prefixed = three_fold_splits("bp4d-")  # an extra corpus's prefixed subject ids are the same people
    table = sota_comparison(metrics, splits=prefixed, corpora=corpora_of(prefixed, "bp4d (bp4d-)"), aus=BP4D_AUS)
    pub, ours = table[table["who"] == "published"], table[table["who"] == "ours"].set_index("method")
    assert set(pub["method"]) == {"JAA-Net", "ME-GraphAU (MEFARG)", "FMAE-IAT"} and len(pub) == 4
    assert (table["protocol"] == "bp4d_3fold").all() and table["mean"].is_monotonic_decreasing
    assert [c for c in table.columns if c.startswith("AU")] == [f"AU{a}" for a in sorted(BP4D_AUS)]
    assert pub.set_index("method").loc["JAA-Net", "note"] == ""  # no protocol note: empty, not NaN
    assert "unknown label (9) as absent" in pub.set_index("method").loc["FMAE-IAT", "note"]
    fmae = pub.set_index("method").loc["FMAE-IAT"]
    assert fmae["mean"] == 67.1 and fmae["AU1"] == 62.7 and "Table 2" in fmae["source"] and fmae["verified"]
    mean = metrics[(metrics["split"] == "3fold_mean") & (metrics["au"] == "mean")].set_index("model")["f1"]
    assert set(ours.index) == set(MODELS) and (ours["split"] == "3fold_mean").all()
    for model in MODELS:
        assert ours.loc[model, "mean"] == pytest.approx(100 * mean[model], abs=0.05)
    one = metrics[(metrics["split"] == "3fold_mean") & (metrics["model"] == "ens-fe") & (metrics["au"] == "23")]
    assert ours.loc["ens-fe", "AU23"] == pytest.approx(100 * float(one["f1"].iloc[0]), abs=0.05)


def test_disfa_protocol_needs_its_aus_and_threshold():
    splits = disfa_splits()
    metrics = fold_metrics(list(STANDARD_AUS))
    table = sota_comparison(metrics, splits=splits, corpora=corpora_of(splits, "disfa"), aus=STANDARD_AUS,
                            threshold=2)
    pub = table[table["who"] == "published"].set_index("backbone")
    assert pub.loc["ResNet-50 (ImageNet)", "mean"] == 63.1 and "AU9" in table.columns and "AU7" not in table.columns
    table = sota_comparison(metrics, splits=splits, corpora=corpora_of(splits, "disfa"), aus=STANDARD_AUS,
                            threshold=1)
    assert "intensity >= 2 in the protocol" in table.set_index("protocol").loc["disfa_3fold", "note"]


def test_report_build_writes_the_state_of_the_art_table(tmp_path):
    path = tmp_path / "summary.csv"
    fold_metrics(list(BP4D_AUS)).to_csv(path, index=False)
    splits = three_fold_splits()
    build_report([path], tmp_path / "r", corpus="BP4D", formats=("png",), splits=splits,
                 corpora=corpora_of(splits, "bp4d"), aus=BP4D_AUS)
    table = pd.read_csv(tmp_path / "r" / "sota_comparison.csv")
    assert set(table["who"]) == {"published", "ours"} and (table["protocol"] == "bp4d_3fold").all()
    index = (tmp_path / "r" / "index.md").read_text()
    assert "published state of the art beside ours" in index and "FMAE-IAT" in index
    assert "FMAE-IAT" in (tmp_path / "r" / "report.html").read_text()


# ------------------------------------------------------------------------ AU sets and NaN in means, said
def test_a_nan_au_is_said_in_summary_headline_and_report(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        summary = fold_metrics(list(STANDARD_AUS), folds=("demo",), nan_au=9)
    assert "AU(s) [9] have no f1" in caplog.text
    means = summary[summary["au"].isin(["mean", "mean8"])]
    assert (means["nan_aus"] == "9").all() and (summary.loc[summary["au"] == "1", "nan_aus"] == "").all()
    clean = fold_metrics(list(STANDARD_AUS), folds=("demo",))
    assert (clean["nan_aus"] == "").all()
    head = headline(summary, "demo")
    assert (head["nan_aus"] == "9").all() and (headline(clean, "demo")["nan_aus"] == "").all()
    path = tmp_path / "summary.csv"
    summary.to_csv(path, index=False)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        build_report([path], tmp_path / "r", corpus="DISFA", formats=("png",))
    assert "leave out the AUs without F1" in caplog.text
    assert "**Note**: means over AUs leave out" in (tmp_path / "r" / "index.md").read_text()
    assert "ens-fe: AU 9" in (tmp_path / "r" / "report.html").read_text()


def test_intensity_mean_warns_about_a_nan_au(caplog):
    from au_transfer.intensity.metrics import intensity_metrics

    rows = [{"subject": "S", "frame": f, "au": au, "set": "test", "value": v, "label": lab}
            for f in range(6) for au, v, lab in ((6, f % 3, f % 3), (12, 0.0, 0.0))]  # AU12: no variance at all
    with caplog.at_level(logging.WARNING):
        m = intensity_metrics(pd.DataFrame(rows), model="svr", split="demo")
    assert np.isnan(m.set_index("au").loc["12", "icc"]) and "AU(s) [12] have no icc" in caplog.text


def test_figures_label_means_by_the_actual_au_set():
    metrics = fold_metrics(list(STANDARD_AUS), folds=("demo",))
    ens = {"fe": {"members": ["vgg_face-face-svm", "cnn_f_ft-face-softmax"], "method": "majority"}}
    figs = {f.name: f for f in figure_data(metrics, "demo", ens, ["fe"])}
    fig8 = figs["fig8_ensemble1"]
    assert set(fig8.data["group"]) == {"mean F1 (8 AUs)"}
    assert fig8.au_label == "the 8 AUs 1, 2, 4, 6, 9, 12, 25, 26" and figs["fig4_backbones"].au_label == fig8.au_label
    bp4d = fold_metrics(list(BP4D_AUS), folds=("demo",))
    assert set({f.name: f for f in figure_data(bp4d, "demo", ens, ["fe"])}["fig8_ensemble1"].data["group"]) == {
        "mean F1 (12 AUs)"}
    mixed = pd.concat([metrics[metrics["model"] != "ens-fe"], bp4d[bp4d["model"] == "ens-fe"]])
    fig8 = {f.name: f for f in figure_data(mixed, "demo", ens, ["fe"])}["fig8_ensemble1"]
    assert set(fig8.data["group"]) == {"mean F1 (each model's AUs)"} and "sets differ" in fig8.au_label
