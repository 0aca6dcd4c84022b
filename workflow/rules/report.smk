# Stage report (paper VII, Figs. 4-10): per-AU F1 / classification-rate tables of every model and ensemble, the
# paper-style figures (PNG + SVG; a figure whose models the config does not produce holds a note instead), the
# paper's numbers and the published state of the art (standard 3-fold protocols) beside ours, and report.html / index.md. `snakemake --report report.html` gathers the figures
# and tables marked with report() below, with the captions in workflow/report/.

REPORT = config["report"]


rule paper_report:
    input:
        summary=LAYOUT.summary(),
        **({"intensity": LAYOUT.intensity_summary()} if config["regressors"]["enabled"] else {}),
    output:
        **report_outputs(),
    params:
        corpus=report_corpus(),
        split=REPORT["split"],
        paper_models=REPORT["paper_models"],
        paper_ensembles=_plan.report_paper_ensembles(config),
        ensembles={n: {"members": list(e["members"]), "method": e["method"]} for n, e in config["ensembles"].items()},
        corpora=split_corpora(),
        splits={name: {w: list(sp.subjects(w)) for w in ("train", "val", "test")} for name, sp in SPLITS.items()},
        aus=AUS,
        threshold=config["data"]["threshold"],
    log:
        "logs/report/report.log",
    conda:
        "../../envs/au_transfer.yaml"
    script:
        "../scripts/report.py"


register_targets("report", lambda: [LAYOUT.report_file("report.html")])
