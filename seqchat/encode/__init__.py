"""Sequence to soft tokens.

Takes canonical nucleotide sequences and gives, per sequence, a matrix of soft tokens in
the LLM's embedding space: `specs` (what a bundle says about its models), `windows`
(splitting long sequences for an encoder), `encoders` (a Hugging Face nucleotide language
model), `projector` (pooling and mapping to the LLM's width), `soft_tokens` (the two in
PyTorch), `compiled` (the same as ONNX graphs in onnxruntime, no torch) and `export`
(writing those graphs). Knows nothing of the LLM runtime.
"""
