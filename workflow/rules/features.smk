# Stage features: CNN features of every frame (paper IV-B), one job per (backbone, crop region, recording):
# results/features/{backbone}/{crop_region}/{recording}.h5. Backbones whose config asks for the training-set mean
# image (backbones.<name>.mean_image, paper IV-A for VGG-Face) depend on the split: their mean image is
# results/mean_image/{split}/{backbone}/{crop_region}.npy and their features live under
# results/split_features/{split}/. Helpers (backbone_options, features_inputs, ...) are in common.smk, block
# "# --- features".

FEAT = config["features"]


rule features:
    input:
        unpack(features_inputs),
    output:
        LAYOUT.features("{backbone}", "{crop_region}", "{recording}"),
    params:
        backbone=lambda wc: wc.backbone,
        weights=lambda wc: backbone_options(wc.backbone)["weights"],
        key_map=lambda wc: backbone_options(wc.backbone)["key_map"],
        seed=lambda wc: backbone_options(wc.backbone)["seed"],
        batch_size=FEAT["batch_size"],
        num_workers=FEAT["num_workers"],
        device=FEAT["device"],
        amp=FEAT["amp"],
        compression=FEAT["compression"],
    log:
        "logs/features/{backbone}/{crop_region}/{recording}.log",
    threads: FEAT["threads"]
    resources:
        gpu=gpu_claim(FEAT["device"]),
    conda:
        "../../envs/au_transfer.yaml"
    script:
        "../scripts/features.py"


rule mean_image:
    input:
        faces=lambda wc: [LAYOUT.faces(r) for r in split_recordings(wc.split, "train")],
    output:
        LAYOUT.mean_image("{split}", "{backbone}", "{crop_region}"),
    params:
        backbone=lambda wc: wc.backbone,
        train_subjects=lambda wc: split_recordings(wc.split, "train"),
    log:
        "logs/mean_image/{split}/{backbone}/{crop_region}.log",
    threads: 1
    conda:
        "../../envs/au_transfer.yaml"
    script:
        "../scripts/mean_image.py"


rule split_features:
    input:
        unpack(features_inputs),
        mean_image=LAYOUT.mean_image("{split}", "{backbone}", "{crop_region}"),
    output:
        LAYOUT.split_features("{split}", "{backbone}", "{crop_region}", "{recording}"),
    params:
        backbone=lambda wc: wc.backbone,
        weights=lambda wc: backbone_options(wc.backbone)["weights"],
        key_map=lambda wc: backbone_options(wc.backbone)["key_map"],
        seed=lambda wc: backbone_options(wc.backbone)["seed"],
        batch_size=FEAT["batch_size"],
        num_workers=FEAT["num_workers"],
        device=FEAT["device"],
        amp=FEAT["amp"],
        compression=FEAT["compression"],
    log:
        "logs/split_features/{split}/{backbone}/{crop_region}/{recording}.log",
    threads: FEAT["threads"]
    resources:
        gpu=gpu_claim(FEAT["device"]),
    conda:
        "../../envs/au_transfer.yaml"
    script:
        "../scripts/features.py"


register_targets("features", feature_targets)
