# Stage corpus + labels: the synthetic demo corpus in the DISFA layout (only when data.demo.enabled), and the
# validated label table of each recording, results/labels/{recording}.csv, with a label/frames/landmark report, read
# by the recording's corpus adapter (au_transfer.datasets; docs/corpora.md). Input helpers source_file(),
# labels_inputs() are in common.smk, block "# --- corpus".

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
        unpack(labels_inputs),
    output:
        csv=LAYOUT.labels("{recording}"),
        report=LAYOUT.labels_report("{recording}"),
    params:
        corpus=lambda wc: CATALOG.spec_of(wc.recording),
        aus=AUS,
    log:
        "logs/labels/{recording}.log",
    threads: 1
    conda:
        "../../envs/au_transfer.yaml"
    script:
        "../scripts/labels.py"


register_targets("labels", lambda: [LAYOUT.labels(r) for r in RECORDINGS])
if DEMO["enabled"]:
    register_targets("corpus", lambda: expand(f"{DATA_ROOT}/Demo_Info/{{subject}}.json", subject=DEMO["subjects"]))
