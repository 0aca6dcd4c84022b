"""The ``au-transfer`` command line: predict AUs on new videos, summarise a run, list backbones, make demo data,
validate a config, convert MatConvNet weights, check or fetch a config's weights.

Exit codes: 0 success; 1 an error in the input (missing file, bad config, untrained model), with a one-line
message naming it, or, with many inputs, any input that failed (the others are done; the end lists the failures);
2 a usage error (unknown option, missing argument).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

#: ``--detect-every``'s default: :data:`au_transfer.predict.faces.DETECT_EVERY` (not imported here: the command
#: line starts without loading the face stack; a test checks that the two agree).
DETECT_EVERY = 30

log = logging.getLogger("au_transfer.cli")

#: Errors that are the user's input, reported as one line with exit code 1 (anything else is a bug: traceback).
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, KeyError, RuntimeError, OSError)


def read_yaml(path: Path) -> dict:
    """A YAML mapping; malformed YAML is one error naming the file, line and column."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"{where}: not valid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config is a YAML mapping (key: value), not a {type(data).__name__}")
    return data


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{value} is not > 0")
    return value


def device_name(text: str) -> str:
    """argparse type: auto, cpu, cuda or cuda:N (mps on Apple machines)."""
    import re

    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device; use auto, cpu, cuda or cuda:N")
    return text


def au_number(text: str) -> int:
    """argparse type: an AU number (1, 2, 4 ...; AU01 and au1 are accepted)."""
    import re

    m = re.fullmatch(r"(?i)(?:au)?0*(\d+)", text.strip())
    if not m or not 1 <= int(m.group(1)) <= 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not an AU number (e.g. 1, 12 or AU12)")
    return int(m.group(1))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    try:
        return version("au-transfer")
    except PackageNotFoundError:
        return __version__


# ---------------------------------------------------------------------------------------------- commands
def _predict_jobs(args: argparse.Namespace) -> tuple[dict[Path, Path], bool]:
    """Input -> CSV of every input, and whether the output is one CSV file (one input, ``-o FILE.csv``: no resume
    record) rather than a folder of CSVs, named after the inputs."""
    from .predict import PredictError, check_outdir, check_output, expand_inputs, output_names

    to_folder = (args.output.endswith(("/", os.sep)) or Path(args.output).is_dir()
                 or Path(args.output).suffix.lower() != ".csv")
    if not to_folder:
        if len(args.input) > 1:
            raise PredictError(f"{len(args.input)} inputs cannot go to the one file {args.output}: name an output "
                               "folder with -o OUTDIR/")
        check_output(args.output)  # before any work
    inputs, notes = expand_inputs(args.input)
    if not to_folder and not inputs and Path(args.input[0]).exists():
        return {Path(args.input[0]): Path(args.output)}, True  # what is wrong with it is said as before, by the run
    for note in notes:
        print(f"au-transfer predict: {note}", file=sys.stderr)
    if not inputs:
        if len(args.input) == 1 and not Path(args.input[0]).exists():
            raise PredictError(f"input {args.input[0]} does not exist")
        raise PredictError(f"no input to predict in {' '.join(args.input)}")
    if not to_folder:
        if len(inputs) > 1:
            raise PredictError(f"{args.input[0]} holds {len(inputs)} inputs (videos, a folder of images): name an "
                               f"output folder with -o OUTDIR/, not the file {args.output}")
        return {inputs[0]: Path(args.output)}, True
    mapping, renamed = output_names(inputs, check_outdir(args.output))
    if renamed:
        print("inputs whose names would collide, and their CSVs:\n  " + "\n  ".join(renamed), flush=True)
    return mapping, False


def cmd_predict(args: argparse.Namespace) -> int:
    from .persist import trust_legacy_pickles
    from .predict import PredictError, Predictor, default_workers, predict_many
    from .predict.bundle import trained_source

    if args.every != 1 and args.fps is not None:
        raise PredictError("--every and --fps: choose one way to sample frames")
    jobs, one_file = _predict_jobs(args)  # before any work
    if args.trust_legacy_pickles:
        trust_legacy_pickles(True)
    options = {"largest_only": args.largest_face, "detect_every": args.detect_every, "every": args.every,
               "fps": args.fps}
    with trained_source(args.models, args.results, args.split, args.model, args.regressor) as src:
        print(src.note, flush=True)
        model = src.model
        with Predictor(model, results=src.results, split=src.split, device=args.device, batch_size=args.batch_size,
                       aus=args.aus, detector=args.detector, regressor=src.regressor, front_end=args.front_end,
                       workers=args.workers or default_workers(len(jobs))) as predictor:
            result = predict_many(predictor, jobs, options=options, chunk_size=args.chunk_size,
                                  overwrite=args.overwrite, resume=not one_file, plot=args.plot,
                                  overlay=args.overlay, progress=not args.quiet,
                                  echo=(lambda line: None) if one_file else None)
    if one_file:
        src, out = next(iter(jobs.items()))
        if src in result.failed:
            raise PredictError(result.failed[src])
        s = result.done[src]
        print(f"{out}: {s['frames']} frames, {s['rows']} rows, {s['faces']} with a face (model {model})")
        return 0
    print(f"{len(result.done)} done, {len(result.skipped)} skipped (complete), {len(result.failed)} failed, of "
          f"{len(jobs)} input(s) (model {model}) -> {args.output}")
    if result.failed:
        print("failed:\n  " + "\n  ".join(f"{src}: {msg}" for src, msg in result.failed.items()), file=sys.stderr)
        return 1
    return 0


def cmd_export_models(args: argparse.Namespace) -> int:
    from .predict.bundle import export_models
    from .predict.predictor import default_split

    split = args.split or default_split(args.results)
    meta = export_models(args.results, split, args.output, models=args.model or None,
                         regressors=args.regressor)
    size = sum(int(e["size"]) for e in meta["files"])
    print(f"{args.output}: {len(meta['files'])} files ({size / 1e6:.1f} MB, sha256 of each in bundle.json), split "
          f"{split}, models {', '.join(meta['models'])}; default model {meta['default_model']}, regressor "
          f"{meta['default_regressor']}")
    print(f"use it with: au-transfer predict INPUT -o OUT.csv --models {args.output}")
    return 0


def cmd_convert_models(args: argparse.Namespace) -> int:
    from .persist import convert_legacy, trust_legacy_pickles

    if args.trust_legacy_pickles:
        trust_legacy_pickles(True)
    done = convert_legacy(args.results, keep=args.keep)
    for old, new in done:
        print(f"{old} -> {new.name}")
    print(f"{args.results}: {len(done)} pickled model(s) rewritten as arrays + JSON"
          + ("" if args.keep or not done else " (the pickles removed)"))
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from .report import summary_text

    print(summary_text(args.results_dir, split=args.split, top=args.top))
    return 0


def cmd_backbones(args: argparse.Namespace) -> int:
    from .backbones import get_spec, list_backbones

    names = list_backbones()
    for name in names:  # resolving a lazily registered backbone may register its variants (dlib_resnet.pool)
        try:
            get_spec(name)
        except Exception:  # noqa: BLE001 - listed below with the reason
            pass
    rows = []
    for name in list_backbones():
        try:
            s = get_spec(name)
            rows.append((name, s.family, str(s.feature_dim), str(s.input_size), str(s.pretrained), s.layer))
        except Exception as exc:  # a lazily registered backbone whose package is missing: list it, say why
            rows.append((name, "?", "?", "?", "?", f"unavailable: {exc}"))
    header = ("name", "family", "dim", "input", "pretrained", "feature layer")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    for r in [header, *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(r[:5], widths, strict=True)) + "  " + (r[5] if args.long
                                                                                             else r[5][:60]))
    return 0


#: demo-corpus options and the keys of the config's data.demo section (whose schema limits they obey)
DEMO_OPTIONS = {"subjects": "--subjects", "n_frames": "--n-frames", "width": "--width", "height": "--height",
                "fps": "--fps", "seed": "--seed"}


def _demo_defaults() -> dict:
    from .config import schema_defaults

    return schema_defaults("data")["demo"]


def cmd_demo_corpus(args: argparse.Namespace) -> int:
    import re

    from .config import SCHEMA_DIR, ConfigError, validate_section
    from .datasets.demo import generate_subject

    demo = {"enabled": True, **{k: getattr(args, k) for k in DEMO_OPTIONS}}
    try:
        validate_section({"demo": demo, "camera": args.camera}, str(SCHEMA_DIR / "data.schema.yaml"), "data")
    except ConfigError as exc:
        msg = str(exc).replace("invalid configuration:\n  ", "")
        key = re.search(r"data\.demo\.(\w+)", msg)
        option = DEMO_OPTIONS.get(key.group(1), "") if key else ""
        raise ValueError(f"{option or 'options'}: {msg}") from None
    for subject in args.subjects:
        generate_subject(args.root, subject, n_frames=args.n_frames, width=args.width, height=args.height,
                         fps=args.fps, seed=args.seed, camera=args.camera)
        print(f"{args.root}: {subject} ({args.n_frames} frames, {args.width}x{args.height}, seed {args.seed})")
    return 0


def cmd_validate_config(args: argparse.Namespace) -> int:
    import yaml

    from .config import SCHEMA_DIR, check_splits, validate_config
    from .plan import check_workflow

    path = Path(args.config)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    cfg = read_yaml(path)
    schemas = Path(args.schemas) if args.schemas else SCHEMA_DIR
    if not schemas.is_dir():
        raise FileNotFoundError(f"schema folder {schemas} does not exist")
    validate_config(cfg, str(schemas))
    check_workflow(cfg)
    splits = check_splits(cfg["splits"])
    print(f"{path}: valid ({len(splits)} split(s): {', '.join(splits)}; {len(cfg['data']['aus'])} AUs; "
          f"{len(cfg.get('ensembles') or {})} ensemble(s))")
    if args.show:
        print(yaml.safe_dump(cfg, sort_keys=False))
    return 0


def cmd_convert_weights(args: argparse.Namespace) -> int:
    from .backbones.convert import convert_weights

    rec = convert_weights(args.src, args.dst, args.backbone)
    norm = rec["normalization"]
    print(f"{rec['dst']}: {args.backbone} from {rec['source']} ({rec['source_format']}, sha256 "
          f"{rec['source_sha256'][:16]}...): {len(rec['layers'])} layers ({', '.join(rec['layers'])}); mean "
          f"{norm.get('average_image', 'none recorded')}, pixel {[round(v, 3) for v in norm.get('mean_pixel', [])]}, "
          f"image size {norm.get('image_size', '?')}; loads with create_backbone({args.backbone!r}, {args.dst!r})")
    return 0


def _weights_config(path_text: str) -> dict:
    from .config import validate_config

    path = Path(path_text)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    return validate_config(read_yaml(path))


def cmd_weights_check(args: argparse.Namespace) -> int:
    from .weights_tools import check_weights

    statuses = check_weights(_weights_config(args.config), offline=args.offline)
    for st in statuses:
        print(st.line())
    bad = [st.backbone for st in statuses if not st.ok]
    if bad:
        raise ValueError(f"{args.config}: weights of {', '.join(bad)} not ready (lines marked FAIL above)")
    print(f"{args.config}: the weights of all {len(statuses)} backbone(s) are ready")
    return 0


def cmd_weights_fetch(args: argparse.Namespace) -> int:
    from .weights_tools import cache_dirs, fetch_weights

    done = fetch_weights(_weights_config(args.config), progress=not args.quiet,
                         report=lambda st: print(st.line(), flush=True))
    dirs = cache_dirs()
    print(f"{len(done)} hub weight(s) in the caches the jobs read: torch hub {dirs['torch hub']} (TORCH_HOME), "
          f"Hugging Face {dirs['hugging face']} (HF_HOME); on nodes without internet run the jobs with the same "
          "TORCH_HOME / HF_HOME and HF_HUB_OFFLINE=1")
    return 0


# ----------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="au-transfer", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    pr = sub.add_parser("predict", help="AU occurrence per frame of a video, an image or a folder of images",
                        description="Detect and align faces (dlib), extract the features the chosen trained model "
                        "or ensemble needs, and write one OpenFace-style row per frame: frame, timestamp, success, "
                        "confidence, AU01_p ... (score), AU01_c ... (0/1), file. See docs/predict.md.")
    pr.add_argument("input", nargs="+", help="video files, image files, folders (a folder's images are one input, "
                    "each video in it another), globs")
    pr.add_argument("-o", "--output", required=True,
                    help="output folder (OUTDIR/: one CSV per input, named after it; complete ones are skipped on a "
                    "rerun), or with one input a CSV file (checked before any work)")
    pr.add_argument("--overwrite", action="store_true", help="redo inputs whose CSV is complete")
    pr.add_argument("--workers", type=positive_int, metavar="N",
                    help="face front ends reading inputs side by side (default: one per input, at most the cores "
                    "but one)")
    pr.add_argument("--every", type=positive_int, default=1, metavar="N",
                    help="predict every Nth frame (rows keep the source frame number and timestamp)")
    pr.add_argument("--fps", type=positive_float, metavar="F",
                    help="resample a video to F frames per second (the first frame of each 1/F s)")
    pr.add_argument("--plot", action="store_true",
                    help="also write NAME.png: each AU over time (score, intensity, frames without a face shaded)")
    pr.add_argument("--overlay", action="store_true",
                    help="also write NAME.overlay.mp4: the video with each face's box, landmarks, number and active "
                    "AUs")
    pr.add_argument("--model", help="model id (e.g. dlib_resnet-face-svm) or ensemble (ens-NAME); default: the "
                    "model with the best mean F1 on the split's validation frames")
    where = pr.add_argument_group("trained models (one of)")
    where.add_argument("--models", help="a model bundle (a folder or .tar written by export-models; its sha256s are "
                       "checked first) or a split's models folder: results/models/<split>")
    where.add_argument("--results", default="results", help="a workflow's results folder (default: results)")
    pr.add_argument("--split", help="the split whose models to use (default: the only one, or the report's)")
    pr.add_argument("--detector", choices=["hog", "cnn"],
                    help="dlib face detector (default: the run's; cnn finds faces that hog misses, e.g. in "
                    "grayscale photos, and is slower)")
    pr.add_argument("--largest-face", action="store_true",
                    help="one row per frame, for its largest face (default: one row per face, column face)")
    pr.add_argument("--detect-every", type=positive_int, default=DETECT_EVERY, metavar="N",
                    help=f"in a video, detect faces every N frames (default {DETECT_EVERY}) and whenever a face is "
                    "lost; in between each face's landmarks are fitted in the box its last landmarks give. 1: "
                    "detect on every frame")
    pr.add_argument("--front-end", choices=["auto", "process", "thread"], default="auto",
                    help="where faces are found (decoding, detection, landmarks, alignment): process (a worker "
                    "process beside the networks; auto's choice on Linux and macOS) or thread (a thread of the "
                    "networks' process)")
    pr.add_argument("--device", type=device_name, default="auto",
                    help="auto (CUDA when available), cpu, cuda, cuda:1 ...")
    pr.add_argument("--batch-size", type=positive_int, default=32, help="crops per backbone batch (default 32)")
    pr.add_argument("--chunk-size", type=positive_int, default=128,
                    help="frames decoded and held at once (default 128)")
    pr.add_argument("--regressor", default="auto",
                    help="intensity regressor for the AU01_r ... columns (e.g. dlib_resnet-face-svr, or ens-NAME: an "
                    "ensemble of regressors, regressors.ensembles); default auto: "
                    "the best on validation when the run trained regressors; none: no _r columns")
    pr.add_argument("--aus", type=au_number, nargs="+", help="only these AUs (default: every AU of the model)")
    pr.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    pr.add_argument("--trust-legacy-pickles", action="store_true",
                    help="load models written before they were stored as arrays + JSON (joblib pickles: loading "
                    "runs any code they hold; only for your own results; better: convert-models)")
    pr.set_defaults(func=cmd_predict)

    ex = sub.add_parser("export-models", help="pack a split's trained models into a bundle that is safe to share",
                        description="Copy what the predictor needs (predictor.json, the models as arrays + JSON, "
                        "fine-tuned networks, mean images, ensembles) with the sha256 of every file into a folder "
                        "or a .tar; `predict --models BUNDLE` checks them before use. No predictions or labels "
                        "are copied. See docs/predict.md.")
    ex.add_argument("results", help="a workflow's results folder (e.g. results)")
    ex.add_argument("--split", help="the split whose models to pack (default: the only one, or the report's)")
    ex.add_argument("-o", "--output", required=True, help="the bundle: a new folder, or a file ending in .tar")
    ex.add_argument("--model", action="append",
                    help="only this model (repeat for several; ensembles bring their members); default: every "
                    "trained model of the split. The first is the bundle's default")
    ex.add_argument("--regressor", action="append",
                    help="only this intensity regressor (repeatable; default: every one)")
    ex.set_defaults(func=cmd_export_models)

    cv = sub.add_parser("convert-models", help="rewrite a results folder's pickled models as arrays + JSON",
                        description="Results written before au-transfer stored models as arrays + JSON hold "
                        "joblib pickles (models/*/*/AU*.joblib). This loads each (which runs any code it holds: "
                        "only for your own results) and writes AU*.npz beside it.")
    cv.add_argument("results", help="a workflow's results folder (e.g. results)")
    cv.add_argument("--trust-legacy-pickles", action="store_true", required=True,
                    help="required: you trust these pickles (they are your own)")
    cv.add_argument("--keep", action="store_true", help="keep the .joblib files (default: removed once converted)")
    cv.set_defaults(func=cmd_convert_models)

    su = sub.add_parser("summary", help="where the report is, and the headline table (best first)")
    su.add_argument("results_dir", help="a workflow's results folder (e.g. results)")
    su.add_argument("--split", help="split to show (default: the report's)")
    su.add_argument("--top", type=int, help="show only the best N")
    su.set_defaults(func=cmd_summary)

    bb = sub.add_parser("backbones", help="list the backbone registry")
    bb.add_argument("--long", action="store_true", help="full feature-layer descriptions")
    bb.set_defaults(func=cmd_backbones)

    demo = _demo_defaults()
    dc = sub.add_parser("demo-corpus", help="generate synthetic subjects in the DISFA layout",
                        description="Synthetic subjects in the DISFA layout; the options obey the limits of the "
                        "config's data.demo section (defaults: its schema's).")
    dc.add_argument("root", help="output folder (DISFA layout)")
    dc.add_argument("--subjects", nargs="+", default=list(demo["subjects"]), help="subject ids (SN001 ...)")
    dc.add_argument("--n-frames", type=int, default=demo["n_frames"])
    dc.add_argument("--width", type=int, default=demo["width"])
    dc.add_argument("--height", type=int, default=demo["height"])
    dc.add_argument("--fps", type=float, default=demo["fps"])
    dc.add_argument("--seed", type=int, default=demo["seed"])
    dc.add_argument("--camera", choices=["left", "right"], default="left")
    dc.set_defaults(func=cmd_demo_corpus)

    vc = sub.add_parser("validate-config", help="validate a workflow config against the schemas (fills defaults)")
    vc.add_argument("config", help="a config YAML file (e.g. config.yaml)")
    vc.add_argument("--schemas", help="schema folder (default: the package's au_transfer/schemas)")
    vc.add_argument("--show", action="store_true", help="print the config with its defaults filled in")
    vc.set_defaults(func=cmd_validate_config)

    cw = sub.add_parser("convert-weights", help="convert a MatConvNet release (.mat) into a backbone's weights",
                        description="Convert a MatConvNet model file (simplenn or DagNN; MATLAB v5/v7 or v7.3) into "
                        "the backbone's native state dict, checked layer by layer against the network and loaded "
                        "with create_backbone; records the release's normalisation and the source's sha256. See "
                        "docs/backbones.md (e.g. imagenet-vgg-f.mat -> weights/cnn_f.pth --backbone cnn_f).")
    cw.add_argument("src", help="the MatConvNet .mat file (imagenet-vgg-f.mat, imagenet-vgg-m.mat, "
                    "imagenet-vgg-s.mat, vgg-face.mat)")
    cw.add_argument("dst", help="output .pth (torch, loaded with weights_only=True) or .safetensors")
    cw.add_argument("--backbone", required=True, help="registry name: cnn_f, cnn_m, cnn_s, vgg_face, zfnet")
    cw.set_defaults(func=cmd_convert_weights)

    wt = sub.add_parser("weights", help="check or fetch the weights a config needs")
    wsub = wt.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    wc = wsub.add_parser("check", help="load every local weight file into its network (keys, shapes) and look "
                         "hub weights up in the caches")
    wc.add_argument("config", help="a config YAML file")
    wc.add_argument("--offline", action="store_true", help="hub weights missing from the caches are failures too")
    wc.set_defaults(func=cmd_weights_check)
    wf = wsub.add_parser("fetch", help="download every hub weight (torchvision, timm) a config needs into the "
                         "caches the jobs read (run on a machine with internet)")
    wf.add_argument("config", help="a config YAML file")
    wf.add_argument("-q", "--quiet", action="store_true", help="no download progress")
    wf.set_defaults(func=cmd_weights_fetch)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``au-transfer``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "command", None) == "predict":
        logging.getLogger("au_transfer").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return int(args.func(args))
    except USER_ERRORS as exc:
        print(f"au-transfer {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
