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
