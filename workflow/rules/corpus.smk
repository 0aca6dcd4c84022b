# Stage corpus + labels: the synthetic demo corpus in the DISFA layout (only when data.demo.enabled), and the
# validated per-subject label tables results/labels/{subject}.csv with a label/video/landmark frame report.
# Input helpers video_file(), label_dir(), landmark_dir() are in common.smk, block "# --- corpus".

DATA = config["data"]
DEMO = DATA["demo"]

if DEMO["enabled"]:  # demo subjects checked before any job (au_transfer.plan.check_workflow)

    rule demo_subject:
        output:
            video=demo_video_file("{subject}"),
            labels=directory(f"{DATA_ROOT}/ActionUnit_Labels/{{subject}}"),
            landmarks=directory(f"{DATA_ROOT}/Landmark_Points/{{subject}}"),
            manifest=f"{DATA_ROOT}/Demo_Info/{{subject}}.json",
        params:
            root=lambda wc, output: str(Path(output.manifest).parent.parent),
            seed=DEMO["seed"],
            n_frames=DEMO["n_frames"],
            width=DEMO["width"],
            height=DEMO["height"],
            fps=DEMO["fps"],
            quality=DEMO["quality"],
            camera=DATA["camera"],
        log:
            "logs/corpus/demo_{subject}.log",
        threads: 1
        conda:
            "../../envs/au_transfer.yaml"
        script:
            "../scripts/demo_corpus.py"


rule labels:
    input:
        video=lambda wc: video_file(wc.subject),
        labels=lambda wc: label_dir(wc.subject),
        landmarks=lambda wc: landmark_dir(wc.subject),
    output:
        csv=LAYOUT.labels("{subject}"),
        report=LAYOUT.labels_report("{subject}"),
    params:
        root=lambda wc, input: str(Path(input.labels).parent.parent),
        aus=AUS,
        camera=DATA["camera"],
    log:
        "logs/labels/{subject}.log",
    threads: 1
    conda:
        "../../envs/au_transfer.yaml"
    script:
        "../scripts/labels.py"


register_targets("labels", lambda: [LAYOUT.labels(s) for s in SUBJECTS])
if DEMO["enabled"]:
    register_targets("corpus", lambda: expand(f"{DATA_ROOT}/Demo_Info/{{subject}}.json", subject=DEMO["subjects"]))
