"""Evaluation: the loop shared by every task, its evaluators (COCO AP; mIoU, F1, OA) and reports."""
