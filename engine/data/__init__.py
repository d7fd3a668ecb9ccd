"""COCO instance datasets, joint transforms and splits."""
