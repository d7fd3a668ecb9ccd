"""Compatibility name for scripts/semantic_table.py until it imports engine.evaluation.semantic_eval
(delete this file when it does)."""
from engine.evaluation.semantic_eval import evaluate_semantic_model

__all__ = ["evaluate_semantic_model"]
