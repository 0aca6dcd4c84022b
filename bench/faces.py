"""Benchmark of the faces stage on a generated demo subject: frames per second and where the time goes.

    python bench/faces.py [--frames 200] [--width 1024] [--height 768] [--size 160] [--dlib-frames 40] [--cnn]

Prints, for the DISFA-landmark path (the default) and the dlib path: frames per second of the landmark job and of
the faces job, with the share of time in decoding, landmark files / dlib, alignment and writing; then the bytes
per frame of the face store for each encoding, what all of DISFA (130,814 frames per camera) would take, and the
speed of random batch reads through FaceStore.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

DISFA_FRAMES = 130_814


def _pct(part: float, total: float) -> str:
    return f"{100 * part / max(total, 1e-12):5.1f}%"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--width", type=int, default=1024, help="DISFA videos are 1024x768")
    ap.add_argument("--height", type=int, default=768)
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--dlib-frames", type=int, default=40, help="frames for the (slow) dlib path")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cnn", action="store_true", help="also time dlib's CNN face detector (slow on CPU)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import cv2

    cv2.setNumThreads(1)
    from au_transfer.datasets import disfa
    from au_transfer.datasets.demo import generate_subject
    from au_transfer.faces import FaceStore, compute_faces, compute_landmarks

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "corpus"
        t = time.perf_counter()
        generate_subject(root, "SN001", n_frames=args.frames, width=args.width, height=args.height, fps=20,
                         seed=args.seed)
        print(f"demo subject: {args.frames} frames {args.width}x{args.height} generated in "
              f"{time.perf_counter() - t:.1f} s")
        video = disfa.video_path(root, "SN001")
        files = disfa.landmark_files(root, "SN001")
        out = Path(tmp)

        # ---- DISFA path
        c = compute_landmarks(video, out / "lm.h5", "SN001", landmark_files=files,
                              read_landmark_file=disfa.read_landmark_file, progress=False)
        s = c["seconds"]
        n = c["n_frames_video"]
        print(f"\nlandmarks, DISFA files (+ dlib for {c['n_dlib']} fallback frames): {n / s['total']:.0f} frames/s "
              f"({s['total']:.2f} s for {n} frames)")
        for k in ("disfa_files", "dlib_setup", "decode", "dlib", "write"):
            print(f"  {k:12s} {s[k]:7.2f} s {_pct(s[k], s['total'])}")
        f = compute_faces(video, out / "lm.h5", out / "faces.h5", size=args.size, progress=False)
        s = f["seconds"]
        print(f"faces ({args.size} px, jpeg): {n / s['total']:.0f} frames/s ({s['total']:.2f} s)")
        for k in ("decode", "align", "write"):
            print(f"  {k:12s} {s[k]:7.2f} s {_pct(s[k], s['total'])}")

        # ---- dlib path (fewer frames: it is slow)
        nd = min(args.dlib_frames, n)
        small = out / "short.avi"
        cap = cv2.VideoCapture(str(video))
        vw = cv2.VideoWriter(str(small), cv2.VideoWriter_fourcc(*"MJPG"), 20, (args.width, args.height))
        for _ in range(nd):
            ok, fr = cap.read()
            vw.write(fr)
        vw.release()
        cap.release()
        runs = [("dlib", 1, 640), ("dlib", 0, 0)] + ([("dlib_cnn", 0, 640)] if args.cnn else [])
        for det, upsample, width in runs:
            c = compute_landmarks(small, out / "lm_dlib.h5", "SN001", landmarks=det, dlib_upsample=upsample,
                                  dlib_detect_width=width, progress=False)
            s = c["seconds"]
            print(f"\nlandmarks, {det} (upsample {upsample}, detect width {width or 'full'}): "
                  f"{nd / s['total']:.1f} frames/s, {c['n_valid']}/{nd} faces found")
            for k in ("dlib_setup", "decode", "dlib", "write"):
                print(f"  {k:12s} {s[k]:7.2f} s {_pct(s[k], s['total'])}")

        # ---- storage per encoding
        print(f"\nface store size at {args.size} px ({n} frames):")
        for enc, comp in (("raw", "gzip"), ("raw", "lzf"), ("raw", "none"), ("png", "png"), ("jpeg", "jpeg")):
            p = out / f"f_{enc}_{comp}.h5"
            r = compute_faces(video, out / "lm.h5", p, size=args.size, encoding=enc,
                              compression=comp if enc == "raw" else "gzip", progress=False)
            per = r["bytes"] / n
            with FaceStore(p) as fs:
                rng = np.random.default_rng(0)
                t = time.perf_counter()
                reps = 20
                for _ in range(reps):
                    fs.images(rng.choice(n, 64, replace=False))
                rand = reps * 64 / (time.perf_counter() - t)
                t = time.perf_counter()
                for i in range(0, n - 64, 64):
                    fs.crops(np.arange(i, i + 64), "lower", 224)
                seq = (n // 64) * 64 / (time.perf_counter() - t)
            print(f"  {enc:4s} {comp:5s}: {per / 1e3:6.1f} kB/frame -> DISFA (130,814 frames/camera) "
                  f"{per * DISFA_FRAMES / 1e9:5.2f} GB; random batches of 64: {rand:6.0f} images/s; "
                  f"sequential lower crops at 224: {seq:5.0f}/s; write {n / r['seconds']['total']:.0f} frames/s")


if __name__ == "__main__":
    main()
