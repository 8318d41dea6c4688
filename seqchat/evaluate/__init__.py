"""Evaluation: the papers' metrics and what one gets without seqchat.

Takes reference and predicted descriptions keyed by id and gives scores (`metrics`:
BLEU-1..4, METEOR, ROUGE-1/2/L, embedding similarity), and gives baseline predictions:
nearest reference, most common description (`baselines`) and the LLM without soft tokens
(`llm_only`).
"""
