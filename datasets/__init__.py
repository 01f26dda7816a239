"""CoOp-style benchmark datasets (one module per dataset, each registers itself in DATASET_REGISTRY).

This file exists so that this folder is a regular package: without it, an installed third-party
package called ``datasets`` (Hugging Face) would shadow it. ``train.py`` imports every module in
here, so a new dataset file needs no other edit (see DATASETS.md, "Adding a new dataset").
"""
