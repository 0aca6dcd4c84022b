"""The demo-derived corpora (au_transfer.datasets.demo.layouts) in the BP4D, DISFA+ and generic layouts, read back
through their adapters: what the workflow tests run on."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from au_transfer import DISFA_AUS
from au_transfer.datasets import disfa
from au_transfer.datasets.base import get_corpus
from au_transfer.datasets.bp4d import BP4D_AUS
from au_transfer.datasets.demo import generate_corpus, layouts
from au_transfer.faces.video import image_files, video_info

N = 24  # frames per demo subject: two sequences of 12


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "DISFA"
    generate_corpus(root, ("SN001", "SN002"), n_frames=N, width=96, height=72, seed=3)
    return root


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("old", [False, True])
def test_bp4d_layout(demo_root, tmp_path, old):
    info = layouts.write_bp4d(demo_root, tmp_path / "BP4D", old_release=old)
    c = get_corpus("bp4d", info["root"])  # the images folder is auto-detected in both releases
    assert c.images_root().name == info["options"]["images_dir"]
    assert [r.id for s in info["subjects"] for r in c.recordings(s)] == info["recordings"]
    demo_labels = disfa.read_labels(demo_root, "SN001")
    for rid in info["recordings"]:
        rec = c.recording(rid)
        names = [p.name for _, p in image_files(rec.source)]
        assert names[0] == ("0001.jpg" if rid.startswith("F001.T1") else "0101.jpg" if rid.startswith("F001")
                            else "1.jpg" if rid.endswith("T1") else "101.jpg")
        df = c.labels(rec, BP4D_AUS)
        assert df["source_frame"].tolist() == info["coded"][rid]
        assert df["frame"].tolist() == list(range(4, N // 2))  # coded range: 4th image to the one before last
        for au, frame in info["unknown"][rid]:
            assert pd.isna(df.loc[df["source_frame"] == frame, f"AU{au}_c"]).all()
        assert {f"AU{a}" for a in (6, 12, 17)} <= set(df.columns) and "AU10" not in df.columns
        for au in (7, 10, 14, 23, 24):
            assert (df[f"AU{au}_c"] == 0).all()
        if rid == "F001.T1":  # occurrence = demo intensity >= 2 on the coded frames
            want = demo_labels["AU12"].to_numpy()[3:N // 2 - 1]
            assert df["AU12"].tolist()[1:] == want[1:].tolist() and pd.isna(df["AU12"][0])
            assert (df["AU6_c"].to_numpy() == (demo_labels["AU6"].to_numpy()[3:N // 2 - 1] >= 2)).all()


def test_disfa_plus_layout(demo_root, tmp_path):
    info = layouts.write_disfa_plus(demo_root, tmp_path / "DISFA+")
    c = get_corpus("disfa_plus", info["root"])
    assert c.subjects() == info["subjects"]
    assert [r.id for s in c.subjects() for r in c.recordings(s)] == sorted(info["recordings"])
    for s in c.subjects():
        demo_labels = disfa.read_labels(demo_root, s)
        dfs = [c.labels(r, DISFA_AUS) for r in c.recordings(s)]
        assert [d["source_frame"].tolist() for d in dfs] == [list(range(N // 2))] * 2
        both = pd.concat(dfs)
        for a in DISFA_AUS:
            assert both[f"AU{a}"].tolist() == demo_labels[f"AU{a}"].tolist()


def test_generic_layout(demo_root, tmp_path):
    info = layouts.write_generic(demo_root, tmp_path / "mine")
    c = get_corpus("generic", info["root"], options=info["options"])
    assert c.aus == tuple(DISFA_AUS) and c.subjects() == ["P01", "P02"]
    assert [r.id for s in c.subjects() for r in c.recordings(s)] == info["recordings"] == ["P01", "P02.a", "P02.b"]
    video = c.recording("P01")
    assert not video.is_images and video_info(video.source).n_frames == N
    df = c.labels(video, c.aus)
    assert df["frame"].tolist() == list(range(1, N + 1)) and df["AU1_c"].isna().sum() == 1
    want = (disfa.read_labels(demo_root, "SN001")["AU12"] >= 2).astype(int).tolist()
    assert df["AU12_c"].tolist() == want
    b = c.labels(c.recording("P02.b"), c.aus)
    assert b["source_frame"].tolist() == b["frame"].tolist() == list(range(1, N // 2 + 1))
    # intensity labels
    info = layouts.write_generic(demo_root, tmp_path / "mine_int", kind="intensity")
    c = get_corpus("generic", info["root"], options=info["options"])
    df = c.labels(c.recording("P01"), [12])
    assert df["AU12"].tolist() == disfa.read_labels(demo_root, "SN001")["AU12"].tolist()


def test_layouts_are_deterministic(demo_root, tmp_path):
    for name, write in (("bp4d", layouts.write_bp4d), ("dplus", layouts.write_disfa_plus),
                        ("generic", layouts.write_generic)):
        write(demo_root, tmp_path / f"{name}1")
        write(demo_root, tmp_path / f"{name}2")
        assert _digest(tmp_path / f"{name}1") == _digest(tmp_path / f"{name}2")


def test_make_corpus_renders_and_converts(tmp_path):
    info = layouts.make_corpus("bp4d", tmp_path / "BP4D", n_frames=10, width=64, height=48)
    assert info["recordings"] == ["F001.T1", "F001.T2", "M001.T1", "M001.T2"]
    c = get_corpus("bp4d", info["root"], options=info["options"])
    assert np.array_equal(c.labels(c.recording("M001.T2"), [1])["frame"], [4])
    with pytest.raises(ValueError, match="unknown layout 'bp5d'"):
        layouts.make_corpus("bp5d", tmp_path)


# --- people counted once, and "present" per corpus (issue 24 §3), on the synthetic corpora
def _config(data_root, corpora, splits, **data):
    import copy

    import yaml
    from conftest import ROOT

    from au_transfer.config import validate_config

    cfg = copy.deepcopy(yaml.safe_load((ROOT / "tests" / "config_test.yaml").read_text()))
    cfg["data_root"] = str(data_root)
    cfg["data"] = {**cfg["data"], "demo": {"enabled": False}, "corpora": corpora, "aus": [1, 2, 4, 6, 12, 15, 17],
                   **data}
    cfg["splits"] = splits
    cfg["faces"]["landmarks"] = "dlib"
    cfg["report"]["paper_models"] = {}
    return validate_config(cfg)


def test_a_disfa_plus_person_is_the_disfa_person(demo_root, tmp_path):
    """DISFA+ records people of DISFA (dplus-SN001 is SN001): a split with SN001 on one side and dplus-SN001 on the
    other fails the subject-exclusive check before any job; other people pass, as do BP4D's."""
    from au_transfer.config import ConfigError
    from au_transfer.datasets.catalog import Catalog
    from au_transfer.plan import check_workflow

    dplus = layouts.write_disfa_plus(demo_root, tmp_path / "DISFA+")
    bp4d = layouts.write_bp4d(demo_root, tmp_path / "BP4D")
    corpora = [{"corpus": "disfa_plus", "root": str(dplus["root"]), "prefix": "dplus-"},
               {"corpus": "bp4d", "root": str(bp4d["root"]), "prefix": "bp4d-"}]
    ok = {"s": {"train": ["SN003", "dplus-SN002"], "val": ["SN004"], "test": ["dplus-SN001", "bp4d-F001"]}}
    cfg = _config(tmp_path / "DISFA", corpora, ok)
    check_workflow(cfg)
    catalog = Catalog(cfg)
    assert catalog.person_of("dplus-SN001.A1_AU1_TrailNo_1") == catalog.person_of("SN001") == "DISFA:SN001"
    assert catalog.person_of("bp4d-F001.T1") == "bp4d-F001"
    shared = {"s": {"train": ["SN001", "SN003"], "val": [], "test": ["dplus-SN001"]}}
    with pytest.raises(ConfigError, match=r"split 's': person\(s\) \['DISFA:SN001'\] in both train and test "
                                          r"\(DISFA:SN001: SN001 in train, dplus-SN001 in test\)"):
        check_workflow(_config(tmp_path / "DISFA", corpora, shared))
    val = {"s": {"train": ["SN003"], "val": ["dplus-SN002"], "test": ["SN002"]}}
    with pytest.raises(ConfigError, match=r"person\(s\) \['DISFA:SN002'\] in both val and test"):
        check_workflow(_config(tmp_path / "DISFA", corpora, val))


def test_present_is_defined_per_corpus(demo_root, tmp_path):
    """DISFA+ calls an AU present at intensity >= its threshold (data.threshold, or its data.corpora entry's),
    BP4D by its occurrence codes (level A counts): the split's corpus columns say both, the jobs get a threshold per
    recording where the corpora's differ, and the report warns about the cross-corpus split."""
    from au_transfer.datasets.catalog import Catalog
    from au_transfer.evaluation import add_corpus_columns
    from au_transfer.labels import threshold_for
    from au_transfer.report.tables import present_notes

    dplus = layouts.write_disfa_plus(demo_root, tmp_path / "DISFA+")
    bp4d = layouts.write_bp4d(demo_root, tmp_path / "BP4D")
    corpora = [{"corpus": "disfa_plus", "root": str(dplus["root"]), "prefix": "dplus-", "threshold": 1},
               {"corpus": "bp4d", "root": str(bp4d["root"]), "prefix": "bp4d-"}]
    splits = {"within": {"train": ["SN003"], "val": [], "test": ["SN004"]},
              "to_bp4d": {"train": ["SN003", "dplus-SN002"], "val": [], "test": ["bp4d-F001"]}}
    catalog = Catalog(_config(tmp_path / "DISFA", corpora, splits))
    assert catalog.present_of("SN003") == "intensity >= 2 (B+)"
    assert catalog.present_of("dplus-SN002") == "intensity >= 1 (A+)"
    assert catalog.present_of("bp4d-F001.T1") == "occurrence codes (A+)"
    assert catalog.threshold_param(["SN003", "SN004"]) == 2  # one corpus: one number, as before
    recs = ["SN003", *catalog.recording_ids(["dplus-SN002"])]
    mixed = catalog.threshold_param(recs)
    assert mixed == {"SN003": 2, **{r: 1 for r in recs[1:]}}
    assert threshold_for(mixed, recs[1]) == 1 and threshold_for(2, recs[1]) == 2
    cols = {name: catalog.split_corpora((*sp["train"], *sp["val"]), sp["test"]) for name, sp in splits.items()}
    assert cols["to_bp4d"] == {"train": "disfa+disfa_plus (dplus-)", "test": "bp4d (bp4d-)",
                               "train_present": "disfa: intensity >= 2 (B+); disfa_plus (dplus-): intensity >= 1 (A+)",
                               "test_present": "occurrence codes (A+)"}
    summary = add_corpus_columns(pd.DataFrame({"model": ["m", "m"], "split": ["within", "to_bp4d"]}), cols)
    assert summary["train_present"].tolist() == ["intensity >= 2 (B+)", cols["to_bp4d"]["train_present"]]
    assert summary["test_present"].tolist() == ["intensity >= 2 (B+)", "occurrence codes (A+)"]
    notes = present_notes(cols)
    assert notes[0] == "Split `within` trains and tests on disfa: present = intensity >= 2 (B+)."
    assert notes[1].startswith("**Warning**: split `to_bp4d` is cross-corpus: it trains on disfa+disfa_plus (dplus-) "
                               "(present = disfa: intensity >= 2 (B+); disfa_plus (dplus-): intensity >= 1 (A+)) and "
                               "tests on bp4d (bp4d-) (present = occurrence codes (A+)).")
    assert "The definitions of present differ" in notes[1]
