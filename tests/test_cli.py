"""The au-transfer command line: help, exit codes, and each subcommand on tiny inputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from au_transfer.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_entry_point_help():
    proc = subprocess.run([sys.executable, "-m", "au_transfer.cli", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0
    for command in ("predict", "export-models", "convert-models", "summary", "backbones", "demo-corpus",
                    "validate-config", "convert-weights", "weights"):
        assert command in proc.stdout


@pytest.mark.parametrize("command", ["predict", "export-models", "convert-models", "summary", "backbones",
                                     "demo-corpus", "validate-config", "convert-weights", "weights", "weights check",
                                     "weights fetch"])
def test_subcommand_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*command.split(), "--help"])
    assert exc.value.code == 0
    assert "usage: au-transfer " + command in capsys.readouterr().out


def test_usage_errors_exit_2(capsys):
    for argv in ([], ["nope"], ["predict", "video.avi", "--model", "x-face-svm"], ["predict", "-o", "o.csv"],
                 ["predict", "v.avi", "-o", "o.csv", "--detector", "mtcnn"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2, argv
    assert "the following arguments are required: -o/--output" in capsys.readouterr().err


def test_predict_missing_models_exit_1(tmp_path, capsys):
    rc = main(["predict", str(tmp_path), "-o", str(tmp_path / "o.csv"), "--model", "x-face-svm",
               "--results", str(tmp_path), "--split", "demo", "-q"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "error" in err and "models" in err and "does not exist" in err
    assert not (tmp_path / "o.csv").exists()


def test_backbones_lists_the_registry(capsys):
    from au_transfer.backbones import list_backbones

    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["name", "family", "dim"]
    names = [line.split()[0] for line in lines[1:]]
    assert names == list_backbones()
    assert any(line.split()[:3] == ["dlib_resnet", "dlib", "128"] for line in lines)


def test_validate_config(tmp_path, capsys):
    assert main(["validate-config", str(ROOT / "config.yaml")]) == 0
    assert "config.yaml: valid" in capsys.readouterr().out
    cfg = yaml.safe_load((ROOT / "tests" / "config_test.yaml").read_text())
    cfg["data"]["threshold"] = 9
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    assert main(["validate-config", str(bad)]) == 1
    assert "data.threshold" in capsys.readouterr().err
    assert main(["validate-config", str(tmp_path / "missing.yaml")]) == 1


def test_summary(tmp_path, capsys):
    from test_report import MODELS, metrics_table

    assert main(["summary", str(tmp_path)]) == 1
    assert "no metrics found" in capsys.readouterr().err
    for i, (model, level) in enumerate(MODELS.items()):
        path = tmp_path / "metrics" / "demo" / f"{model}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        metrics_table(model, level, seed=i).to_csv(path, index=False)
    assert main(["summary", str(tmp_path), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "ens-paper3_stacked" in out and "cnn_f-face-svm" not in out
    assert "Headline (split demo" in out


def test_demo_corpus(tmp_path, capsys):
    assert main(["demo-corpus", str(tmp_path), "--subjects", "SN007", "--n-frames", "20", "--width", "96",
                 "--height", "72"]) == 0
    labels = sorted((tmp_path / "ActionUnit_Labels" / "SN007").glob("*.txt"))
    assert len(labels) == 12
    videos = list(tmp_path.glob("Video*/*SN007*"))
    assert len(videos) == 1 and videos[0].stat().st_size > 0
    assert main(["demo-corpus", str(tmp_path), "--subjects", "bad"]) == 1


# ----------------------------------------------------------------------------------- errors before any work
def test_version(capsys):
    from au_transfer import __version__

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"au-transfer {__version__}"


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--batch-size", "0", "argument --batch-size: 0 is not >= 1"),
    ("--chunk-size", "-3", "argument --chunk-size: -3 is not >= 1"),
    ("--device", "gpu", "argument --device: 'gpu' is not a device"),
    ("--aus", "AUx", "argument --aus: 'AUx' is not an AU number"),
])
def test_bad_predict_options_are_one_line_naming_the_option(option, value, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(tmp_path / "v.avi"), "-o", str(tmp_path / "o.csv"), "--results", str(tmp_path),
              "--split", "s", "--model", "x-face-svm", option, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_au_option_accepts_the_usual_spellings():
    from au_transfer.cli import au_number

    assert [au_number(t) for t in ("1", "AU01", "au12", "26")] == [1, 1, 12, 26]


def test_malformed_yaml_is_one_line_with_file_line_and_column(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data_root: x\nsplits:\n  a: {train: [SN001], test: [SN002]\n  b: 3\n")
    assert main(["validate-config", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"{bad}:4:3: not valid YAML" in err
    lst = tmp_path / "list.yaml"
    lst.write_text("- a\n- b\n")
    assert main(["validate-config", str(lst)]) == 1
    assert "a config is a YAML mapping" in capsys.readouterr().err


def test_validate_config_runs_the_cross_section_checks(tmp_path, capsys):
    cfg = yaml.safe_load((ROOT / "tests" / "config_test.yaml").read_text())
    cfg["ensembles"]["fe"]["members"].append("vgg_face-face-svm")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["validate-config", str(path)]) == 1
    assert "backbone 'vgg_face', which is not configured" in capsys.readouterr().err


@pytest.mark.parametrize(("option", "value", "key"), [("--n-frames", "5", "n_frames"), ("--width", "10", "width"),
                                                       ("--subjects", "S1", "subjects")])
def test_demo_corpus_obeys_the_schema_limits(option, value, key, tmp_path, capsys):
    assert main(["demo-corpus", str(tmp_path / "c"), option, value]) == 1
    err = capsys.readouterr().err
    assert f"{option}: config key 'data.demo.{key}" in err
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").rglob("*.avi"))
