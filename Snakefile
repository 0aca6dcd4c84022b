# au-transfer: facial Action Unit recognition by transfer learning (Lim et al.) as a Snakemake workflow.
#   snakemake --cores 8                                     # the synthetic demo corpus (config.yaml)
#   snakemake --cores 8 --configfile config/disfa_paper.yaml --config data_root=/data/DISFA
# The rules live in workflow/rules/*.smk, one file per stage; the logic lives in the au_transfer package.

import os

from snakemake.utils import min_version

min_version("9.0")


# config.yaml is the demo. A config given with --configfile is complete on its own (schema defaults fill the rest):
# it is NOT merged onto config.yaml, so no demo setting leaks into a DISFA run.
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/corpus.smk"
include: "workflow/rules/faces.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/classifiers.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/ensemble.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/predict.smk"


rule all:
    input:
        all_targets,
    default_target: True
