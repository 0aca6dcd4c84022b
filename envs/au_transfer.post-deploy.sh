#!/usr/bin/env bash
# Run by Snakemake inside the freshly created au_transfer env, after envs/au_transfer.yaml (for a manual
# `conda env create`, run it yourself with the env active and AU_TRANSFER_ROOT set). Mirrors the Makefile:
# packages whose metadata conflicts with the torch pin (requirements-nodeps.txt) are installed without deps.
set -euo pipefail
root=${AU_TRANSFER_ROOT:?set AU_TRANSFER_ROOT to the au-transfer project folder}
python -m pip install --no-deps -r "$root/requirements-nodeps.txt"
