"""COCO instance datasets, semantic class maps painted from them, joint transforms and splits."""
