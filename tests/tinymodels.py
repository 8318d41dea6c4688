"""Tiny random-weight models the tests build for themselves: a GGUF LLM and a nucleotide encoder.

The GGUF is a 2-layer llama with a SentencePiece-style vocabulary (byte fallback, ChatML
control tokens and a chat template), written with the `gguf` package in F32 so that
`transformers` dequantizes it exactly. llama.cpp loads it in milliseconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

WORD_PIECES = [
    "▁", "▁the", "▁a", "▁of", "▁gene", "▁protein", "▁RNA", "▁DNA", "▁binding",
    "▁ribosomal", "▁transfer", "▁membrane", "▁kinase", "▁subunit", "▁involved", "▁in",
    "▁transcription", "▁encodes", "▁this", "▁sequence", "▁is", "▁and", "▁.", ".", ",",
    "e", "t", "a", "o", "i", "n", "s", "r", "h", "l", "d", "c", "u", "m",
]
SPECIAL = ["<|im_start|>", "<|im_end|>"]


def _vocabulary() -> tuple[list[str], list[float], list[int]]:
    from gguf import TokenType

    tokens = ["<unk>", "<s>", "</s>"]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [TokenType.BYTE] * 256
    tokens += SPECIAL
    types += [TokenType.CONTROL] * len(SPECIAL)
    tokens += WORD_PIECES
    types += [TokenType.NORMAL] * len(WORD_PIECES)
    scores = [0.0] * (len(tokens) - len(WORD_PIECES)) + [
        -float(i) for i in range(len(WORD_PIECES))
    ]
    return tokens, scores, [int(t) for t in types]


def write_tiny_gguf(
    path: Path,
    *,
    n_embd: int = 64,
    n_layer: int = 2,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_ff: int = 128,
    seed: int = 0,
) -> Path:
    """Write a random-weight llama GGUF (F32) with a ChatML chat template; returns the path."""
    import gguf

    tokens, scores, types = _vocabulary()
    n_vocab = len(tokens)
    rng = np.random.default_rng(seed)

    def weight(*shape: int, scale: float = 0.08) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("seqchat-tiny-llama")
    writer.add_context_length(2048)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    writer.add_tensor("token_embd.weight", weight(n_vocab, n_embd, scale=0.5))
    head_dim = n_embd // n_head
    for layer in range(n_layer):
        prefix = f"blk.{layer}"
        writer.add_tensor(f"{prefix}.attn_norm.weight", np.ones(n_embd, np.float32))
        writer.add_tensor(f"{prefix}.attn_q.weight", weight(n_embd, n_embd))
        writer.add_tensor(f"{prefix}.attn_k.weight", weight(n_head_kv * head_dim, n_embd))
        writer.add_tensor(f"{prefix}.attn_v.weight", weight(n_head_kv * head_dim, n_embd))
        writer.add_tensor(f"{prefix}.attn_output.weight", weight(n_embd, n_embd))
        writer.add_tensor(f"{prefix}.ffn_norm.weight", np.ones(n_embd, np.float32))
        writer.add_tensor(f"{prefix}.ffn_gate.weight", weight(n_ff, n_embd))
        writer.add_tensor(f"{prefix}.ffn_up.weight", weight(n_ff, n_embd))
        writer.add_tensor(f"{prefix}.ffn_down.weight", weight(n_embd, n_ff))
    writer.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    writer.add_tensor("output.weight", weight(n_vocab, n_embd, scale=0.5))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_tiny_encoder(directory: Path, *, hidden_size: int = 32, seed: int = 0) -> Path:
    """A random 2-layer RNA-FM (multimolecule) with its tokenizer, saved with save_pretrained."""
    import torch
    from multimolecule import RnaFmConfig, RnaFmModel, RnaTokenizer

    torch.manual_seed(seed)
    config = RnaFmConfig(
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=68,
    )
    RnaFmModel(config).save_pretrained(directory)
    RnaTokenizer().save_pretrained(directory)
    return directory


DNABERT2_WINDOW = 512
"""GeneChat's window: DNABERT-2 reads a gene in 512-nt pieces."""


def write_tiny_dnabert2_encoder(directory: Path, *, hidden_size: int = 32, seed: int = 0) -> Path:
    """A random 2-layer DNABERT-2 (multimolecule `DnaBert2`: ALiBi attention, GeneChat's
    encoder family) reading 512-nt windows, with a one-letter DNA tokenizer."""
    import torch
    from multimolecule import DnaBert2Config, DnaBert2Model, DnaTokenizer

    torch.manual_seed(seed)
    tokenizer = DnaTokenizer()
    config = DnaBert2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=DNABERT2_WINDOW + 4,
        alibi_starting_size=DNABERT2_WINDOW + 4,
    )
    DnaBert2Model(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def write_tiny_bundle(
    directory: Path,
    *,
    encoder: str = "rnafm",
    llm_path: Path | None = None,
    user: str = "{sequence}",
    question: str = "",
    max_new_tokens: int = 12,
    seed: int = 0,
) -> Path:
    """A complete bundle: tiny encoder (RNA-FM, or DNABERT-2 with `encoder="dnabert2"`),
    random linear projector, tiny GGUF LLM."""
    import shutil

    import torch
    import yaml

    from seqchat.encode.projector import build_projector, save_projector
    from seqchat.encode.specs import ProjectorConfig

    directory.mkdir(parents=True, exist_ok=True)
    if encoder == "dnabert2":
        write_tiny_dnabert2_encoder(directory / "encoder", seed=seed)
        encoder_section = {"path": "encoder", "kind": "multimolecule", "alphabet": "dna",
                           "window": DNABERT2_WINDOW}
    else:
        write_tiny_encoder(directory / "encoder", seed=seed)
        encoder_section = {"path": "encoder", "kind": "multimolecule", "alphabet": "rna"}
    if llm_path is None:
        write_tiny_gguf(directory / "llm.gguf", seed=seed)
    else:
        shutil.copy(llm_path, directory / "llm.gguf")
    config = ProjectorConfig(type="linear", in_dim=32, out_dim=64, pool_stride=4, max_soft_tokens=16)
    torch.manual_seed(seed)
    save_projector(build_projector(config), directory / "projector.safetensors")
    bundle = {
        "format": 1,
        "name": "tiny",
        "encoder": encoder_section,
        "projector": {**config.as_dict(), "weights": "projector.safetensors"},
        "llm": {"gguf": "llm.gguf", "n_ctx_per_slot": 256},
        "prompt": {"user": user, "question": question},
        "generation": {"max_new_tokens": max_new_tokens, "temperature": 0.0},
    }
    (directory / "seqchat.yaml").write_text(yaml.safe_dump(bundle, sort_keys=False))
    return directory
