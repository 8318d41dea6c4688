"""Training: the projector (stage 1, `align`) and the projector with optional LoRA
(stage 2, `instruct`) in PyTorch, on the LLM loaded from the same GGUF that is served.

Takes annotated sequences (JSONL, or FASTA + TSV) and question/answer pairs made from them
(`qa`), and gives a bundle that the annotation pipeline loads.
"""
