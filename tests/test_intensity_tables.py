"""Intensity tables: merged predictions, regressor ensembles (mean; weights fitted on validation rows only), the
summary and the report's intensity table and figure."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_report import metrics_files  # noqa: F401  (fixture)

from au_transfer.intensity.metrics import IntensityError
from au_transfer.intensity.tables import ensemble_intensity, merge_intensity, write_metrics, write_summary
from au_transfer.report import build_report
from au_transfer.report.intensity import INTENSITY_FIGURE, INTENSITY_TABLE, intensity_table

AUS = [1, 12]


def _member(path, noise, seed, test_noise=None):
    rng = np.random.default_rng(seed)
    rows = []
    for au in AUS:
        for which, subject in (("val", "SN002"), ("test", "SN003")):
            label = np.tile(np.arange(6.0), 5)
            sd = noise if which == "val" or test_noise is None else test_noise
            value = np.clip(label + rng.normal(0, sd, len(label)), 0, 5)
            rows += [{"subject": subject, "frame": f + 1, "au": au, "set": which, "value": v, "label": t, "face": 1}
                     for f, (v, t) in enumerate(zip(value, label, strict=True))]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture
def members(tmp_path):
    return [_member(tmp_path / "good.csv", 0.3, 0), _member(tmp_path / "bad.csv", 3.0, 1)]


def test_mean_and_weighted_ensembles(members, tmp_path):
    mean = ensemble_intensity(members, ["good", "bad"], "mean", tmp_path / "m.csv", tmp_path / "m.json", name="m")
    keys = ["subject", "frame", "au", "set"]
    a, b = (pd.read_csv(p).set_index(keys)["value"] for p in members)
    np.testing.assert_allclose(mean.set_index(keys)["value"].to_numpy(), ((a + b) / 2).loc[mean.set_index(keys).index])
    ensemble_intensity(members, ["good", "bad"], "weighted", tmp_path / "w.csv", tmp_path / "w.json", name="w")
    w = json.loads((tmp_path / "w.json").read_text())["weights"]
    assert w["1"][0] > w["1"][1] and sum(w["12"]) == pytest.approx(1.0)
    scores = {}
    for name in ("m", "w"):
        write_metrics(tmp_path / f"{name}.csv", tmp_path / f"{name}_metrics.csv", model=name, split="s", aus=AUS)
        scores[name] = pd.read_csv(tmp_path / f"{name}_metrics.csv", dtype={"au": str}).set_index("au")
    assert scores["w"].loc["mean", "icc"] > scores["m"].loc["mean", "icc"] > 0
    summary = write_summary([tmp_path / "m_metrics.csv", tmp_path / "w_metrics.csv"], tmp_path / "summary.csv")
    assert set(summary["model"]) == {"m", "w"}


def test_ensemble_weights_never_see_test_rows(tmp_path):
    """The bad member's test rows made perfect change neither weights nor validation values."""
    good = _member(tmp_path / "good.csv", 0.3, 0)
    bad = _member(tmp_path / "bad.csv", 3.0, 1)
    bad_perfect_test = _member(tmp_path / "bad2.csv", 3.0, 1, test_noise=0.0)
    ensemble_intensity([good, bad], ["g", "b"], "weighted", tmp_path / "1.csv", tmp_path / "1.json")
    ensemble_intensity([good, bad_perfect_test], ["g", "b"], "weighted", tmp_path / "2.csv", tmp_path / "2.json")
    assert json.loads((tmp_path / "1.json").read_text())["weights"] == json.loads(
        (tmp_path / "2.json").read_text())["weights"]


def test_merge_refuses_a_bad_table(members, tmp_path):
    merged = merge_intensity(members[:1], tmp_path / "merged.csv")
    assert list(merged.columns) == ["subject", "frame", "au", "set", "value", "label", "face"]
    bad = pd.read_csv(members[0]).assign(value=7.0)
    bad.to_csv(tmp_path / "bad7.csv", index=False)
    with pytest.raises(IntensityError, match="value '7.0' is not a number in 0..5"):
        merge_intensity([tmp_path / "bad7.csv"], tmp_path / "x.csv")


def test_report_has_an_intensity_table_and_figure(members, metrics_files, tmp_path):  # noqa: F811
    paths = []
    for i, name in enumerate(["dlib_resnet-face-svr", "dlib_resnet-face-svr_med"]):
        paths.append(tmp_path / f"{name}.csv")
        write_metrics(members[i], paths[-1], model=name, split="demo", aus=AUS)
    summary = write_summary(paths, tmp_path / "summary.csv")
    table = intensity_table(summary)
    assert list(table.columns) == ["model", "split", "metric", "AU1", "AU12", "mean", "mean_sd", "n_seeds"]
    assert table["metric"].tolist() == ["ICC(3,1)", "PCC", "MAE"] * 2
    assert table["model"].iloc[0] == "dlib_resnet-face-svr"  # best mean ICC first
    out = tmp_path / "report"
    build_report(metrics_files, out, corpus="synthetic demo corpus", formats=("png",),
                 intensity_summary=tmp_path / "summary.csv")
    assert (out / f"{INTENSITY_TABLE}.csv").is_file() and (out / f"{INTENSITY_FIGURE}.png").stat().st_size > 5000
    html = (out / "report.html").read_text()
    assert "AU intensity" in html and f"{INTENSITY_FIGURE}.png" in html and html.rstrip().endswith("</html>")
    assert "ICC(3,1)" in (out / "index.md").read_text()


def _cfg(**regressors):
    from au_transfer.config import validate_config

    return validate_config({"data_root": "x", "splits": {"s": {"train": ["SN001"], "val": ["SN002"],
                                                               "test": ["SN003"]}},
                            "features": {"backbones": ["dlib_resnet"]}, "regressors": regressors})


def test_plan_lists_regressor_ids_and_checks_ensemble_members():
    from au_transfer.config import ConfigError
    from au_transfer.plan import check_workflow, intensity_model_ids

    assert intensity_model_ids(_cfg()) == []  # off by default
    cfg = _cfg(enabled=True, models=["svr", "ridge"], normalise=["none", "median"], lstm={"enabled": True},
               ensembles={"e": {"members": ["dlib_resnet-face-svr", "dlib_resnet-face-ridge_med"]}})
    assert intensity_model_ids(cfg) == ["dlib_resnet-face-svr", "dlib_resnet-face-svr_med", "dlib_resnet-face-ridge",
                                        "dlib_resnet-face-ridge_med", "dlib_resnet-face-lstmr", "ens-e"]
    check_workflow(cfg)
    bad = _cfg(enabled=True, ensembles={"e": {"members": ["dlib_resnet-face-svr", "dlib_resnet-upper-svr"]}})
    with pytest.raises(ConfigError, match=r"regressors.ensembles.e.members.*dlib_resnet-upper-svr"):
        check_workflow(bad)
    with pytest.raises(ConfigError, match="regressors.models"):
        _cfg(enabled=True, models=["knn"])


def test_plan_lists_median_classifiers_after_their_model_and_accepts_them_as_ensemble_members():
    from au_transfer.config import ConfigError, validate_config
    from au_transfer.plan import check_workflow, classifier_model_ids

    def cfg(median, members=("dlib_resnet-face-svm", "dlib_resnet-face-lda")):
        return validate_config({"data_root": "x", "splits": {"s": {"train": ["SN001"], "val": ["SN002"],
                                                                   "test": ["SN003"]}},
                                "features": {"backbones": ["dlib_resnet"]},
                                "classifiers": {"regions": ["face"], "normalise_median": list(median),
                                                "lstm": {"enabled": False}},
                                "finetune": {"enabled": False},
                                "ensembles": {"e": {"members": list(members)}}})

    assert classifier_model_ids(cfg([])) == ["dlib_resnet-face-lda", "dlib_resnet-face-svm"]
    ok = cfg(["dlib_resnet-face-svm"], members=["dlib_resnet-face-svm", "dlib_resnet-face-svm_med"])
    assert classifier_model_ids(ok) == ["dlib_resnet-face-lda", "dlib_resnet-face-svm", "dlib_resnet-face-svm_med"]
    check_workflow(ok)
    with pytest.raises(ConfigError, match=r"classifiers.normalise_median.*dlib_resnet-upper-svm"):
        check_workflow(cfg(["dlib_resnet-upper-svm"]))
    with pytest.raises(ConfigError, match=r"ensembles.e.*dlib_resnet-face-lda_med"):
        check_workflow(cfg([], members=["dlib_resnet-face-svm", "dlib_resnet-face-lda_med"]))
    with pytest.raises(ConfigError, match="normalise_median"):
        cfg(["dlib_resnet-face-lstm"])  # the schema: LDA/SVM models only


def test_an_au_without_known_test_intensities_is_left_out_of_the_metrics(members, tmp_path):
    m = write_metrics(members[0], tmp_path / "m.csv", model="m", split="s", aus=[1, 12, 14])
    assert list(m["au"]) == ["1", "12", "mean"]
