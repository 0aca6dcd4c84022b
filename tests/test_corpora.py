"""Corpus adapters (bp4d, disfa_plus, generic) on small hand-made fixtures: every tolerated quirk, a clear error for
every malformed input. The demo-derived corpora are tested in test_corpora_demo.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from au_transfer.datasets import bp4d as bp4d_mod
from au_transfer.datasets.base import CorpusError, corpus_names, get_corpus

ROOT = Path(__file__).resolve().parents[1]
IMG = np.full((8, 8, 3), 128, np.uint8)


def images(folder: Path, names) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        assert cv2.imwrite(str(folder / n), IMG)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------------------ registry
def test_registry_knows_every_adapter_from_base_alone():
    assert {"bp4d", "disfa", "disfa_plus", "generic"} <= set(corpus_names())
    # importing only the base module is enough (the package __init__ registers the adapters first)
    code = "from au_transfer.datasets.base import corpus_names; print(corpus_names())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "bp4d" in out and "disfa_plus" in out and "generic" in out
    with pytest.raises(CorpusError, match=r"data.corpus: unknown corpus 'bp4'; known corpora: bp4d,"):
        get_corpus("bp4", ".")


# ---------------------------------------------------------------------------------------------------------- BP4D
OCC_AUS = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)


def occ_text(frames, values=None, header="plain", aus=OCC_AUS) -> str:
    """An occurrence file: ``values`` {frame: {au: v}} (default 0)."""
    head = ["frame", *map(str, aus)] if header == "plain" else ["", *(f"AU{a}" for a in aus)]
    lines = [",".join(head)]
    for f in frames:
        v = (values or {}).get(f, {})
        lines.append(",".join([str(f), *(str(v.get(a, 0)) for a in aus)]))
    return "\n".join(lines) + "\n"


@pytest.fixture()
def bp4d(tmp_path):
    """F001 (padded names 0001-0010, new release) and M001 (unpadded 101-110, AU1-style header)."""
    root = tmp_path / "BP4D"
    images(root / "BP4D-training" / "F001" / "T1", [f"{n:04d}.jpg" for n in range(1, 11)])
    images(root / "BP4D-training" / "F001" / "T2", [f"{n:04d}.jpg" for n in range(1, 6)])
    images(root / "BP4D-training" / "M001" / "T1", [f"{n}.jpg" for n in range(101, 111)])
    write(root / "AUCoding" / "AU_OCC" / "F001_T1.csv",
          occ_text(range(4, 9), {4: {1: 1, 12: 9}, 5: {1: 9, 2: 1}, 8: {12: 1}}))
    write(root / "AUCoding" / "AU_OCC" / "M001_T1.csv", occ_text([105, 103, 104], {104: {24: 1}}, header="AU"))
    for au in (6, 12):  # AU10, 14, 17 have no intensity files in this release
        write(root / "AUCoding" / "AU_INT" / f"AU{au:02d}" / f"F001_T1_AU{au:02d}.csv",
              "4,0\n5,9\n6,3\n7,5\n8,1\n")
        write(root / "AUCoding" / "AU_INT" / f"AU{au:02d}" / f"M001_T1_AU{au:02d}.csv", "103,2\n104,0\n")
    return root


def test_bp4d_subjects_recordings_and_splits(bp4d, tmp_path):
    c = get_corpus("bp4d", bp4d)
    assert len(c.subjects()) == 41 and c.subjects()[0] == "F001" and c.subjects()[-1] == "M018"
    (bp4d / "BP4D-training" / "F001" / "notes").mkdir()
    assert [r.id for r in c.recordings("F001")] == ["F001.T1", "F001.T2"]  # from disk, task order
    rec = c.recordings("F001")[1]
    assert rec.source == bp4d / "BP4D-training" / "F001" / "T2" and rec.sequence == "T2" and rec.is_images
    # a subject without an image folder, or a missing tree: all eight tasks, so that a dry run plans
    assert [r.sequence for r in c.recordings("F002")] == [f"T{i}" for i in range(1, 9)]
    gone = get_corpus("bp4d", tmp_path / "nowhere", prefix="bp4d-")
    recs = gone.recordings("bp4d-M003")
    assert recs[0].id == "bp4d-M003.T1" and recs[0].source == tmp_path / "nowhere/BP4D-training/M003/T1"
    with pytest.raises(CorpusError, match="unknown BP4D subject 'F024'"):
        c.recordings("F024")
    splits = gone.splits()
    assert sorted(splits) == ["fold1", "fold2", "fold3"]
    tests = [set(s["test"]) for s in splits.values()]
    assert set().union(*tests) == {f"bp4d-{s}" for s in bp4d_mod.BP4D_SUBJECTS} and sum(map(len, tests)) == 41
    for s in splits.values():
        assert not (set(s["train"]) | set(s["val"])) & set(s["test"])
        assert not set(s["train"]) & set(s["val"]) and len(s["train"]) + len(s["val"]) + len(s["test"]) == 41


def test_bp4d_config_ships_the_protocol():
    cfg = yaml.safe_load((ROOT / "config" / "bp4d_3fold.yaml").read_text())
    assert cfg["data"]["corpus"] == "bp4d" and tuple(cfg["data"]["aus"]) == bp4d_mod.BP4D_AUS
    assert cfg["faces"]["landmarks"] == "dlib"
    assert cfg["splits"] == bp4d_mod.three_fold_splits()


# The parts of ME-GraphAU's tool/BP4D_image_label_process.py and tool/DISFA_image_label_process.py, and its fold
# numbers: fold1 trains on part1 + part2 and tests part3, fold2 tests part2, fold3 tests part1.
BP4D_PARTS = ("F001 M007 F018 F008 F002 M004 F010 F009 M012 M001 F016 M014 F023 M008".split(),
              "M011 F003 M010 M002 F005 F022 M018 M017 F013 M016 F020 F011 M013 M005".split(),
              "F007 F015 F006 F019 M006 M009 F012 M003 F004 F021 F017 M015 F014".split())
DISFA_PARTS = ("SN002 SN010 SN001 SN026 SN027 SN032 SN030 SN009 SN016".split(),
               "SN013 SN018 SN011 SN028 SN012 SN006 SN031 SN021 SN024".split(),
               "SN003 SN029 SN023 SN025 SN008 SN005 SN007 SN017 SN004".split())


@pytest.mark.parametrize("config, parts, n_val", [("bp4d_3fold.yaml", BP4D_PARTS, 4),
                                                  ("disfa_3fold.yaml", DISFA_PARTS, 3)])
def test_folds_are_numbered_as_me_graphau(config, parts, n_val):
    """fold1 tests part3, fold2 part2, fold3 part1; each trains on the other two parts in part order, the last
    ``n_val`` subjects of the second training part held out for validation (the lists written out)."""
    p1, p2, p3 = parts
    expected = {"fold1": {"train": p1 + p2[:-n_val], "val": p2[-n_val:], "test": p3},
                "fold2": {"train": p1 + p3[:-n_val], "val": p3[-n_val:], "test": p2},
                "fold3": {"train": p2 + p3[:-n_val], "val": p3[-n_val:], "test": p1}}
    cfg = yaml.safe_load((ROOT / "config" / config).read_text())
    assert cfg["splits"] == expected
    if config.startswith("bp4d"):
        assert bp4d_mod.three_fold_splits() == expected
        assert [list(p) for p in bp4d_mod.PARTS] == list(parts)
        assert bp4d_mod.three_fold_splits("bp4d-")["fold1"]["test"] == [f"bp4d-{s}" for s in p3]


def test_bp4d_labels_padded_names_coded_range_unknowns(bp4d):
    c = get_corpus("bp4d", bp4d)
    df = c.labels(c.recording("F001.T1"), [12, 1, 2, 6, 17])
    assert list(df.columns) == ["frame", "source_frame", "AU1_c", "AU2_c", "AU6_c", "AU12_c", "AU17_c", "AU6",
                                "AU12"]  # AU17 has no intensity file here
    assert df["source_frame"].tolist() == [4, 5, 6, 7, 8]  # only the coded range, not from frame 1
    assert df["frame"].tolist() == [4, 5, 6, 7, 8]
    assert df["AU1_c"].isna().tolist() == [False, True, False, False, False]  # 9 = unknown
    assert df["AU1_c"].tolist()[0] == 1 and pd.isna(df["AU12_c"][0]) and df["AU12_c"][4] == 1
    assert df["AU12"].isna().tolist() == [False, True, False, False, False]
    assert df["AU12"].tolist()[2:] == [3, 5, 1]


def test_bp4d_labels_unpadded_names_au_headers_unsorted_rows(bp4d):
    c = get_corpus("bp4d", bp4d)
    df = c.labels(c.recording("M001.T1"), [24, 6])
    assert df["source_frame"].tolist() == [103, 104, 105]  # BP4D numbers 101-110 -> positions 1-10
    assert df["frame"].tolist() == [3, 4, 5]
    assert df["AU24_c"].tolist() == [0, 1, 0]
    assert df["AU6"].tolist()[:2] == [2, 0] and pd.isna(df["AU6"][2])  # coded frame without intensity: unknown


def test_bp4d_older_release_and_intensity_folder_variants(tmp_path):
    root = tmp_path / "old"
    images(root / "Sequences(2D+3D)" / "F003" / "T4", [f"{n:03d}.jpg" for n in range(0, 6)])
    write(root / "AUCoding" / "F003_T4.csv", occ_text([2, 3], {3: {6: 1}}, header="AU"))
    write(root / "AU_INT" / "AU6" / "F003_T4_AU6.csv", "2,0\n3,4\n")  # unpadded folder and file names
    write(root / "AU_INT" / "AU17" / "F003_T4_AU17.csv", "frame,intensity\n2,1\n3,9\n")  # a header line
    c = get_corpus("bp4d", root)
    assert c.images_root() == root / "Sequences(2D+3D)"
    assert [r.sequence for r in c.recordings("F003")] == ["T4"]
    rec = c.recording("F003.T4")
    df = c.labels(rec, [6, 17])
    assert df["frame"].tolist() == [3, 4] and df["source_frame"].tolist() == [2, 3]  # images numbered from 0
    assert df["AU6_c"].tolist() == [0, 1] and df["AU6"].tolist() == [0, 4]
    assert df["AU17"][0] == 1 and pd.isna(df["AU17"][1])
    assert set(c.label_inputs(rec)) == {root / "AUCoding" / "F003_T4.csv", rec.source,
                                        root / "AU_INT" / "AU6" / "F003_T4_AU6.csv",
                                        root / "AU_INT" / "AU17" / "F003_T4_AU17.csv"}


def test_bp4d_images_dir_option_and_detection_error(tmp_path):
    root = tmp_path / "b"
    images(root / "my frames" / "F001" / "T1", ["1.jpg"])
    (root / "AUCoding").mkdir()
    with pytest.raises(CorpusError, match=r"no BP4D image folder .*folders found: AUCoding, my frames\. "
                                          r"Name it with data.options.images_dir"):
        get_corpus("bp4d", root).recordings("F001")
    c = get_corpus("bp4d", root, options={"images_dir": "my frames"})
    assert c.recordings("F001")[0].source == root / "my frames" / "F001" / "T1"
    flat = tmp_path / "flat"  # the subject folders straight under root
    images(flat / "F001" / "T1", ["1.jpg"])
    assert get_corpus("bp4d", flat).images_root() == flat


@pytest.mark.parametrize("case, match", [
    ("missing", r"AU_OCC/F001_T2\.csv: occurrence label file of F001 T2 is missing"),
    ("value", r"AU_OCC/F001_T1\.csv, line 3: AU2 of frame 5 is '2'; occurrence must be 0, 1 or 9"),
    ("intensity", r"AU12/F001_T1_AU12\.csv, line 2: intensity '6' of frame 5 must be 0-5 or 9"),
    ("twice", r"AU_OCC/F001_T1\.csv, line 4: frame 4 is listed twice \(first on line 2\)"),
    ("twice_int", r"AU06/F001_T1_AU06\.csv, line 3: frame 4 is listed twice \(first on line 1\)"),
    ("images", r"AU_OCC/F001_T1\.csv: no image for coded frame\(s\) 11-13, 15 in .*F001/T1"),
    ("au", r"AU_OCC/F001_T1\.csv, line 1: no column for AU\(s\) \[17\]"),
    ("header", r"AU_OCC/F001_T1\.csv, line 1: header cell 'smile' \(column 3\) names no AU"),
    ("int_missing", r"AU_INT/AU06/F001_T1_AU06\.csv: intensity label file of F001 T1 AU6 is missing"),
])
def test_bp4d_errors(bp4d, case, match):
    c = get_corpus("bp4d", bp4d)
    occ = bp4d / "AUCoding" / "AU_OCC" / "F001_T1.csv"
    rec, aus = c.recording("F001.T1"), [1, 2, 6, 12, 17]
    if case == "missing":
        rec = c.recording("F001.T2")
    elif case == "value":
        write(occ, occ_text(range(4, 9), {5: {2: 2}}))
    elif case == "intensity":
        write(bp4d / "AUCoding" / "AU_INT" / "AU12" / "F001_T1_AU12.csv", "4,0\n5,6\n")
    elif case == "twice":
        write(occ, occ_text([4, 5, 4]))
    elif case == "twice_int":
        write(bp4d / "AUCoding" / "AU_INT" / "AU06" / "F001_T1_AU06.csv", "4,0\n5,1\n4,1\n")
    elif case == "images":
        write(occ, occ_text([9, 10, 11, 12, 13, 15]))
    elif case == "au":
        write(occ, occ_text([4], aus=(1, 2, 6, 12)))
    elif case == "header":
        write(occ, "frame,1,smile\n4,0,0\n")
    elif case == "int_missing":
        (bp4d / "AUCoding" / "AU_INT" / "AU06" / "F001_T1_AU06.csv").unlink()
    with pytest.raises(CorpusError, match=match):
        c.labels(rec, aus)
    with pytest.raises(CorpusError, match=r"AU\(s\) \[5\] are not coded in corpus bp4d"):
        c.labels(rec, [1, 5])


# -------------------------------------------------------------------------------------------------------- DISFA+
@pytest.fixture()
def dplus(tmp_path):
    root = tmp_path / "DISFA+"
    for subject, trials in (("SN004", ("B_trial", "A_trial")), ("SN001", ("A_trial",))):
        for trial in trials:
            images(root / "Images" / subject / trial, [f"{i:03d}.jpg" for i in range(5)])
            for au in (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26):
                write(root / "Labels" / subject / trial / f"AU{au}.txt",
                      "".join(f"{i:03d}.jpg     {(i + au) % 6}\n" for i in range(1, 5)))
    write(root / "Labels" / "SN004" / "A_trial" / "AU1.txt",  # header lines, commas, one frame left out
          "AU1 intensity\nnumber of frames: 5\n000.jpg,2\n001.jpg,3\n003.jpg,0\n004.jpg,5\n")
    return root


def test_disfa_plus_reads_trials_and_tolerates_headers(dplus):
    c = get_corpus("disfa_plus", dplus, prefix="dp-")
    assert c.subjects() == ["dp-SN001", "dp-SN004"]
    recs = c.recordings("dp-SN004")
    assert [r.id for r in recs] == ["dp-SN004.A_trial", "dp-SN004.B_trial"]
    assert recs[0].source == dplus / "Images" / "SN004" / "A_trial"
    df = c.labels(recs[0], [2, 1])
    assert list(df.columns) == ["frame", "source_frame", "AU1", "AU2"]
    assert df["source_frame"].tolist() == [0, 1, 2, 3, 4] and df["frame"].tolist() == [1, 2, 3, 4, 5]
    assert df["AU1"].tolist()[:2] == [2, 3] and pd.isna(df["AU1"][2]) and df["AU1"].tolist()[3:] == [0, 5]
    assert pd.isna(df["AU2"][0]) and df["AU2"].tolist()[1:] == [3, 4, 5, 0]  # AU2 file starts at 001.jpg


def test_disfa_plus_sequence_names_are_sanitised(dplus):
    images(dplus / "Images" / "SN001" / "trial 2.b", ["000.jpg"])
    c = get_corpus("disfa_plus", dplus)
    rec = c.recording("SN001.trial_2_b")
    assert rec.source.name == "trial 2.b"


@pytest.mark.parametrize("text, match", [
    ("000.jpg 6\n", r"AU1\.txt, line 1: intensity '6' of 000\.jpg is outside 0-5"),
    ("000.jpg 1\n001.jpg 2\n000.jpg 1\n", r"AU1\.txt, line 3: frame 0 is listed twice \(first on line 1\)"),
    ("header\n000.jpg 1\ngarbage here now\n", r"AU1\.txt, line 3: expected '<image> <intensity>'"),
    ("000.jpg 1\n007.jpg 1\n008.jpg 1\n", r"SN001/A_trial: no image for labelled frame\(s\) 7-8 in"),
    (None, r"SN001/A_trial/AU1\.txt: label file of AU1 \(SN001\.A_trial\) is missing"),
])
def test_disfa_plus_errors(dplus, text, match):
    path = dplus / "Labels" / "SN001" / "A_trial" / "AU1.txt"
    if text is None:
        path.unlink()
    else:
        write(path, text)
    c = get_corpus("disfa_plus", dplus)
    with pytest.raises(CorpusError, match=match):
        c.labels(c.recording("SN001.A_trial"), [1, 2])


def test_disfa_plus_missing_tree(tmp_path):
    with pytest.raises(CorpusError, match=r"Images: the DISFA\+ image folder is missing"):
        get_corpus("disfa_plus", tmp_path).subjects()


# ------------------------------------------------------------------------------------------------------- generic
@pytest.fixture()
def generic(tmp_path):
    root = tmp_path / "mine"
    (root / "videos").mkdir(parents=True)
    (root / "videos" / "p01.avi").write_bytes(b"not decoded by the label reader")
    images(root / "frames" / "p02_a", [f"img_{n:03d}.png" for n in range(5, 10)])
    write(root / "labels" / "p01.csv", "frame,AU1,AU12\n1,0,1\n2,,1\n3,1,0\n")
    write(root / "labels" / "p02_a.csv", "frame,1,6\n7,1,0\n5,0,\n")
    write(root / "labels" / "p02_b.csv", "frame,AU1\n1,1\n")
    write(root / "recordings.csv", "subject,sequence,source,labels\nP01,,videos/p01.avi,labels/p01.csv\n"
          "P02,a,frames/p02_a,labels/p02_a.csv\n")
    return root


def test_generic_video_and_image_folder(generic):
    c = get_corpus("generic", generic, prefix="g-")
    assert c.aus == (1, 6, 12) and c.intensity_aus == ()
    assert c.subjects() == ["g-P01", "g-P02"]
    p01, p02 = c.recordings("g-P01")[0], c.recordings("g-P02")[0]
    assert p01.id == "g-P01" and not p01.is_images and p02.id == "g-P02.a" and p02.is_images
    df = c.labels(p01, [1, 12])
    assert list(df.columns) == ["frame", "AU1_c", "AU12_c"] and df["frame"].tolist() == [1, 2, 3]
    assert pd.isna(df["AU1_c"][1]) and df["AU12_c"].tolist() == [1, 1, 0]
    df = c.labels(p02, [1, 6])
    assert df["source_frame"].tolist() == [5, 7] and df["frame"].tolist() == [1, 3]  # sorted, positions
    assert df["AU1_c"].tolist() == [0, 1] and pd.isna(df["AU6_c"][0])
    assert set(c.label_inputs(p02)) == {generic / "recordings.csv", generic / "labels" / "p02_a.csv", p02.source}
    with pytest.raises(CorpusError, match=r"p01\.csv, line 1: no column for AU\(s\) \[6\]"):
        c.labels(p01, [6])


def test_generic_intensity(generic):
    write(generic / "labels" / "p01.csv", "frame,AU1\n1,4\n2,\n")
    c = get_corpus("generic", generic, options={"labels": "intensity"})
    assert c.intensity_aus == c.aus
    df = c.labels(c.recording("P01"), [1])
    assert list(df.columns) == ["frame", "AU1"] and df["AU1"][0] == 4 and pd.isna(df["AU1"][1])
    with pytest.raises(CorpusError, match=r"data.options.labels: 'both' is not one of occurrence, intensity"):
        get_corpus("generic", generic, options={"labels": "both"})


@pytest.mark.parametrize("index, match", [
    ("subject,source\nP01,videos/p01.avi\n", r"recordings\.csv, line 1: missing column\(s\) labels"),
    ("subject,sequence,source,labels\nP.1,,videos/p01.avi,labels/p01.csv\n",
     r"recordings\.csv, line 2: subject 'P\.1' may hold only"),
    ("subject,sequence,source,labels\n\nP01,x y,videos/p01.avi,labels/p01.csv\n",
     r"recordings\.csv, line 3: sequence 'x y' may hold only"),
    ("subject,sequence,source,labels\nP01,,videos/none.avi,labels/p01.csv\n",
     r"recordings\.csv, line 2: source .*videos/none\.avi does not exist"),
    ("subject,sequence,source,labels\nP01,,videos/p01.avi,labels/none.csv\n",
     r"recordings\.csv, line 2: label file .*labels/none\.csv does not exist"),
    ("subject,sequence,source,labels\nP02,a,frames/p02_a,labels/p02_a.csv\nP02,a,videos/p01.avi,labels/p01.csv\n",
     r"recordings\.csv, line 3: recording P02\.a is listed twice \(first on line 2\)"),
    ("subject,sequence,source,labels\nP02,,frames/p02_a,labels/p02_a.csv\nP02,b,videos/p01.avi,labels/p02_b.csv\n",
     r"recordings\.csv, line 2: subject P02 has 2 recordings, so each needs a sequence name"),
])
def test_generic_index_errors(generic, index, match):
    write(generic / "recordings.csv", index)
    with pytest.raises(CorpusError, match=match):
        get_corpus("generic", generic).subjects()


@pytest.mark.parametrize("text, match", [
    ("frame,AU1\n1,2\n", r"p01\.csv, line 2: AU1 of frame 1 is '2'; occurrence must be 0-1"),
    ("frame,AU1\n1,yes\n", r"p01\.csv, line 2: AU1 of frame 1 is 'yes'"),
    ("frame,AU1\n1,0\n\n1,1\n", r"p01\.csv, line 4: frame 1 is listed twice \(first on line 2\)"),
    ("frame,AU1\n0,0\n", r"p01\.csv, line 2: frame 0 is below 1"),
    ("time,AU1\n1,0\n", r"p01\.csv, line 1: the first column must be 'frame'"),
])
def test_generic_label_errors(generic, text, match):
    write(generic / "labels" / "p01.csv", text)
    c = get_corpus("generic", generic)
    with pytest.raises(CorpusError, match=match):
        c.labels(c.recording("P01"), [1])


def test_generic_images_missing_for_labelled_frames(generic):
    write(generic / "labels" / "p02_a.csv", "frame,AU1\n5,1\n12,0\n13,0\n")
    c = get_corpus("generic", generic)
    with pytest.raises(CorpusError, match=re.escape("p02_a.csv: no image for labelled frame(s) 12-13 in")):
        c.labels(c.recording("P02.a"), [1])
