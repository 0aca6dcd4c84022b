# Stage faces (paper III, IV-A, IV-E): per recording (one sequence of a subject: au_transfer.datasets), 68 landmarks
# per frame of its video or image folder (the corpus's shipped landmarks, e.g. DISFA's files, or dlib), then
# similarity-aligned face crops with landmarks and region boxes (upper / middle / lower, Fig. 3), then a QC sheet.
# Two jobs, so that changing the alignment (faces.size, margin, regions...) never reruns landmark detection.
# Package: au_transfer.faces (docs/faces.md). Rows of every file are the decoded video frames (1-based);
# frames without a usable face keep their row with valid = False and a reason.
# The landmarks and faces rules pass their keys of the `faces` section as params under the section's own names
# (plus `root`); the scripts build au_transfer.faces.FaceSettings from them (keys a job does not use take the
# schema defaults and are ignored), so a job reruns only when one of its own keys changes.

FACES = config["faces"]


rule landmarks:
    input:
        unpack(faces_landmark_inputs),
    output:
        LAYOUT.landmarks("{recording}"),
    params:
        root=DATA_ROOT,
        landmarks=FACES["landmarks"],
        fallback=FACES["fallback"],
        dlib_upsample=FACES["dlib_upsample"],
        dlib_detect_width=FACES["dlib_detect_width"],
        min_confidence=FACES["min_confidence"],
        plausibility=FACES["plausibility"],
    log:
        "logs/faces/landmarks_{recording}.log",
    threads: 1
    conda:
        "../../envs/au_transfer.yaml"
    script:
        "../scripts/landmarks.py"


rule faces:
    input:
        video=lambda wc: source_file(wc.recording),
        landmarks=LAYOUT.landmarks("{recording}"),
    output:
        LAYOUT.faces("{recording}"),
    params:
        size=FACES["size"],
        margin=FACES["margin"],
        min_image_std=FACES["min_image_std"],
        region_pad=FACES["region_pad"],
        region_forehead=FACES["region_forehead"],
        crop_aspect=FACES["crop_aspect"],
        encoding=FACES["encoding"],
        compression=FACES["compression"],
        compression_level=FACES["compression_level"],
        jpeg_quality=FACES["jpeg_quality"],
    log:
        "logs/faces/faces_{recording}.log",
    threads: 1
    conda:
        "../../envs/au_transfer.yaml"
    script:
        "../scripts/faces.py"


rule faces_qc:
    input:
        video=lambda wc: source_file(wc.recording),
        landmarks=LAYOUT.landmarks("{recording}"),
        faces=LAYOUT.faces("{recording}"),
    output:
        png=LAYOUT.qc("{recording}", "png"),
        csv=LAYOUT.qc("{recording}", "csv"),
    params:
        samples=FACES["qc_samples"],
        columns=FACES["qc_columns"],
        tile=FACES["qc_tile"],
    log:
        "logs/faces/qc_{recording}.log",
    threads: 1
    conda:
        "../../envs/au_transfer.yaml"
    script:
        "../scripts/faces_qc.py"


register_targets(
    "faces",
    lambda: [LAYOUT.faces(r) for r in RECORDINGS] + [LAYOUT.qc(r, ext) for r in RECORDINGS for ext in ("png", "csv")],
)
