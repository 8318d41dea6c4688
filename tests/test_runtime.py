"""The GGUF runtime: soft-token injection, parity with transformers, batching."""

from __future__ import annotations

from pathlib import Path

import llama_cpp
import numpy as np
import pytest
import torch

from seqchat.bundle import load_bundle
from seqchat.llm.prompt import layout_for
from seqchat.llm.runtime import (
    DecodingSettings,
    GgufRuntime,
    GgufVocabulary,
    LlmRuntimeError,
    SoftPrompt,
    log_softmax,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# Sequences for the parity checks: short, one window, several windows, past max_soft_tokens.
PARITY_LENGTHS = [9, 64, 150, 400]


@pytest.fixture(scope="module")
def bundle(tiny_bundle: Path):
    return load_bundle(str(tiny_bundle))


@pytest.fixture(scope="module")
def token_embeddings(bundle) -> np.ndarray:
    """token_embd.weight of the GGUF, dequantized: (n_vocab, n_embd)."""
    import gguf
    from gguf.quants import dequantize

    reader = gguf.GGUFReader(str(bundle.llm_path))
    (tensor,) = [t for t in reader.tensors if t.name == "token_embd.weight"]
    rows = dequantize(tensor.data, tensor.tensor_type)
    n_embd = int(tensor.shape[0])  # ggml order: ne0 is the embedding width
    return np.asarray(rows, dtype=np.float32).reshape(-1, n_embd)


@pytest.fixture(scope="module")
def runtime(bundle):
    with GgufRuntime(bundle.llm_path, n_parallel=1, n_ctx_per_slot=512, n_threads=1) as rt:
        yield rt


@pytest.fixture(scope="module")
def chain_and_vocabulary(bundle):
    from seqchat.train.chain import chain_from_bundle

    chain, vocabulary = chain_from_bundle(bundle)
    yield chain, vocabulary
    vocabulary.close()


@pytest.fixture(scope="module")
def layout(bundle, chain_and_vocabulary):
    return layout_for(chain_and_vocabulary[1], bundle.prompt)


@pytest.fixture(scope="module")
def parity_sequences() -> list[str]:
    rng = np.random.default_rng(7)
    return ["".join(rng.choice(list("ACGT"), size=n)) for n in PARITY_LENGTHS]


@pytest.fixture
def exact_attention(monkeypatch: pytest.MonkeyPatch) -> None:
    """Contexts created inside the test use plain attention and an F32 KV cache, so llama.cpp
    computes what transformers computes in float32 up to rounding (the runtime's default
    context uses flash attention with an F16 KV cache, about 1e-2 off in the logits)."""
    default_params = llama_cpp.llama_context_default_params

    def exact() -> object:
        params = default_params()
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.type_k = llama_cpp.GGML_TYPE_F32
        params.type_v = llama_cpp.GGML_TYPE_F32
        return params

    monkeypatch.setattr(llama_cpp, "llama_context_default_params", exact)


def word_ids(vocabulary: GgufVocabulary, text: str) -> list[int]:
    ids = vocabulary.tokenize(text, False)
    assert len(ids) > 5
    return ids


# --- 1. injection parity -----------------------------------------------------------------


def test_token_embedding_table_is_the_llms(token_embeddings: np.ndarray, runtime: GgufRuntime) -> None:
    assert token_embeddings.shape == (runtime.n_vocab, runtime.n_embd)
    assert np.abs(token_embeddings).max() > 0


def test_embedding_rows_give_the_same_logits_as_token_ids(
    runtime: GgufRuntime, token_embeddings: np.ndarray
) -> None:
    vocabulary = runtime.vocabulary
    prefix = vocabulary.tokenize("<|im_start|>user\n", True)
    body = word_ids(vocabulary, " the gene encodes a kinase")
    tail = word_ids(vocabulary, " involved in transcription.")

    by_ids = runtime.next_token_logits(prefix, np.zeros((0, runtime.n_embd), np.float32), body + tail)
    by_rows = runtime.next_token_logits(prefix, token_embeddings[body], tail)

    # Row i predicts the token after position i; the first row is the one before suffix[0].
    assert by_ids.shape == (len(body) + len(tail) + 1, runtime.n_vocab)
    assert by_rows.shape == (len(tail) + 1, runtime.n_vocab)
    np.testing.assert_allclose(by_rows, by_ids[len(body) :], rtol=0, atol=1e-4)

    # The whole prompt as embeddings, no suffix at all.
    only_rows = runtime.next_token_logits(prefix, token_embeddings[body + tail], [])
    assert only_rows.shape == (1, runtime.n_vocab)
    np.testing.assert_allclose(only_rows[0], by_ids[-1], rtol=0, atol=1e-4)

    # Embeddings are really read: a different row gives different logits.
    moved = token_embeddings[body].copy()
    moved[-1] = token_embeddings[body[0]]
    assert np.abs(runtime.next_token_logits(prefix, moved, tail) - by_rows).max() > 1e-2


def test_next_token_logits_leaves_generation_unaffected(runtime: GgufRuntime, token_embeddings: np.ndarray) -> None:
    """next_token_logits clears the cached prefix, so a later generate() starts clean."""
    vocabulary = runtime.vocabulary
    prefix = vocabulary.tokenize("<|im_start|>user\n", True)
    prompt = SoftPrompt("p", token_embeddings[word_ids(vocabulary, " a membrane protein")], (260,))
    settings = DecodingSettings(max_new_tokens=6)
    first = list(runtime.generate(prefix, [prompt], settings))
    runtime.next_token_logits(prefix[:2], token_embeddings[[5, 6, 7]], [8, 9])
    again = list(runtime.generate(prefix, [prompt], settings))
    assert [g.token_ids for g in first] == [g.token_ids for g in again]
    assert first[0].mean_logprob == pytest.approx(again[0].mean_logprob, abs=1e-6)


# --- 2. framework parity -----------------------------------------------------------------


def transformers_logits(chain, layout, soft: torch.Tensor, continuation: list[int]) -> torch.Tensor:
    """Logits of the transformers LLM for prefix + soft + suffix + continuation, built by hand
    from the layout; row i predicts token i + 1."""
    embed = chain.llm.get_input_embeddings()

    def rows(ids) -> torch.Tensor:
        return embed(torch.tensor(list(ids), dtype=torch.long))

    inputs = torch.cat([rows(layout.prefix_ids), soft, rows(layout.suffix_ids), rows(continuation)])
    with torch.no_grad():
        return chain.llm(inputs_embeds=inputs[None]).logits[0]


def runtime_logits_after_suffix(rt: GgufRuntime, layout, soft: np.ndarray, continuation: list[int]) -> np.ndarray:
    """Runtime logits predicting continuation[0], continuation[1], ... (one row each)."""
    rows = rt.next_token_logits(layout.prefix_ids, soft, list(layout.suffix_ids) + continuation)
    start = len(layout.suffix_ids)
    return rows[start : start + len(continuation)]


def test_framework_parity_teacher_forced(
    bundle, chain_and_vocabulary, layout, parity_sequences, exact_attention
) -> None:
    chain, vocabulary = chain_and_vocabulary
    continuation = vocabulary.tokenize(
        " this gene encodes the ribosomal protein subunit involved in RNA binding.", False
    ) + [vocabulary.eos_id]
    with torch.no_grad():
        soft_tokens = chain.soft_tokens(parity_sequences)
    with GgufRuntime(bundle.llm_path, n_parallel=1, n_ctx_per_slot=512, n_threads=1) as rt:
        for sequence, soft in zip(parity_sequences, soft_tokens):
            assert 1 <= soft.shape[0] <= bundle.projector.max_soft_tokens
            # The chain's own teacher-forced argmax (SeqchatChain.inputs lays out the prompt).
            chain_top1 = chain.teacher_forced_tokens(sequence, layout, continuation)
            # By hand, from the layout.
            reference = transformers_logits(chain, layout, soft, continuation)
            start = len(layout.prefix_ids) + soft.shape[0] + len(layout.suffix_ids) - 1
            reference = reference[start : start + len(continuation)].numpy()
            served = runtime_logits_after_suffix(rt, layout, soft.numpy(), continuation)

            assert served.shape == reference.shape == (len(continuation), rt.n_vocab)
            assert served.argmax(axis=1).tolist() == chain_top1, f"{len(sequence)} nt"
            assert reference.argmax(axis=1).tolist() == chain_top1
            np.testing.assert_allclose(served, reference, rtol=0, atol=1e-4)


def transformers_greedy(chain, layout, soft: torch.Tensor, n_tokens: int, stop: set[int]) -> list[int]:
    generated: list[int] = []
    for _ in range(n_tokens):
        logits = transformers_logits(chain, layout, soft, generated)[-1]
        token = int(logits.argmax())
        if token in stop:
            break
        generated.append(token)
    return generated


def test_greedy_generation_matches_transformers(
    bundle, chain_and_vocabulary, layout, parity_sequences, exact_attention
) -> None:
    chain, vocabulary = chain_and_vocabulary
    stop = {t for t in range(vocabulary.n_vocab) if vocabulary.is_end_of_generation(t)}
    with torch.no_grad():
        soft_tokens = chain.soft_tokens(parity_sequences)
    prompts = [
        SoftPrompt(str(i), soft.numpy(), layout.suffix_ids) for i, soft in enumerate(soft_tokens)
    ]
    settings = DecodingSettings(max_new_tokens=8)
    with GgufRuntime(bundle.llm_path, n_parallel=2, n_ctx_per_slot=512, n_threads=1) as rt:
        served = {g.key: g for g in rt.generate(layout.prefix_ids, prompts, settings)}
    assert sorted(served) == [p.key for p in prompts]
    for prompt, soft in zip(prompts, soft_tokens):
        expected = transformers_greedy(chain, layout, soft, settings.max_new_tokens, stop)
        assert list(served[prompt.key].token_ids) == expected
        assert served[prompt.key].text == vocabulary.detokenize(expected).strip()


def test_default_runtime_stays_close_to_transformers(
    bundle, chain_and_vocabulary, layout, parity_sequences
) -> None:
    """The runtime as served (flash attention, F16 KV cache): logits within 0.05 of float32
    transformers, and the same greedy answer for a few tokens."""
    chain, vocabulary = chain_and_vocabulary
    stop = {t for t in range(vocabulary.n_vocab) if vocabulary.is_end_of_generation(t)}
    continuation = vocabulary.tokenize(" a kinase involved in transcription.", False)
    with torch.no_grad():
        soft_tokens = chain.soft_tokens(parity_sequences)
    settings = DecodingSettings(max_new_tokens=4)
    with GgufRuntime(bundle.llm_path, n_parallel=1, n_ctx_per_slot=512, n_threads=1) as rt:
        for soft in soft_tokens:
            reference = transformers_logits(chain, layout, soft, continuation)
            start = len(layout.prefix_ids) + soft.shape[0] + len(layout.suffix_ids) - 1
            reference = reference[start : start + len(continuation)].numpy()
            served = runtime_logits_after_suffix(rt, layout, soft.numpy(), continuation)
            np.testing.assert_allclose(served, reference, rtol=0, atol=5e-2)
            prompt = SoftPrompt("x", soft.numpy(), layout.suffix_ids)
            (generation,) = rt.generate(layout.prefix_ids, [prompt], settings)
            expected = transformers_greedy(chain, layout, soft, settings.max_new_tokens, stop)
            assert list(generation.token_ids) == expected


# --- 3. batched vs one at a time ---------------------------------------------------------


def random_prompts(n_embd: int, lengths: list[int], suffix: tuple[int, ...]) -> list[SoftPrompt]:
    rng = np.random.default_rng(3)
    return [
        SoftPrompt(f"p{i}", (rng.standard_normal((n, n_embd)) * 0.5).astype(np.float32), suffix)
        for i, n in enumerate(lengths)
    ]


PROMPT_LENGTHS = [3, 16, 1, 9, 12, 5, 7, 2, 14]


@pytest.fixture(scope="module")
def real_prompts(bundle, layout) -> list[SoftPrompt]:
    """Soft prompts from the bundle's own encoder and projector; with max_new_tokens=20 some
    answers stop early (end of generation) and some run to the limit."""
    from seqchat.encode.soft_tokens import SoftTokenizer
    from seqchat.encode.encoders import NucleotideEncoder
    from seqchat.encode.projector import load_projector

    soft_tokenizer = SoftTokenizer(
        NucleotideEncoder.load(bundle.encoder, "cpu"),
        load_projector(bundle.projector, bundle.projector_weights),
    )
    rng = np.random.default_rng(5)
    lengths = [5, 200, 17, 64, 90, 33, 1, 150, 48, 65, 12, 120]
    matrices = soft_tokenizer(["".join(rng.choice(list("ACGT"), size=n)) for n in lengths])
    return [SoftPrompt(f"q{i}", m, layout.suffix_ids) for i, m in enumerate(matrices)]


def generate_all(bundle, layout, prompts, n_parallel: int, settings: DecodingSettings, threads: int = 1):
    with GgufRuntime(
        bundle.llm_path, n_parallel=n_parallel, n_ctx_per_slot=256, n_threads=threads
    ) as rt:
        generations = list(rt.generate(layout.prefix_ids, prompts, settings))
    return [g.key for g in generations], {g.key: g for g in generations}


def test_batched_generation_equals_one_at_a_time_to_the_last_bit(bundle, layout, real_prompts) -> None:
    """Even with this tiny model's F32 weights, whose matrix and vector kernels round
    differently, a sequence's arithmetic does not depend on its neighbours: every step is
    one ubatch of two or more tokens (see GgufRuntime._step_padding)."""
    prompts = real_prompts + random_prompts(64, PROMPT_LENGTHS, layout.suffix_ids)
    settings = DecodingSettings(max_new_tokens=20)
    order_1, single = generate_all(bundle, layout, prompts, 1, settings)
    keys = [p.key for p in prompts]
    assert order_1 == keys  # one slot: in input order
    # Early stops free slots at different times, so later prompts join a running batch.
    assert {g.finish_reason for g in single.values()} == {"stop", "length"}
    for n_parallel in (3, 4):
        order, batched = generate_all(bundle, layout, prompts, n_parallel, settings)
        assert sorted(order) == sorted(keys) and order != keys  # in order of completion
        assert batched == single


def test_generation_steps_feed_the_slots_in_ascending_order(bundle, layout, real_prompts) -> None:
    """llama.cpp computes a step as one ubatch only for a run of consecutive sequence ids;
    early stops refill slots out of order, which must not reorder the steps."""
    steps: list[list[int]] = []
    with GgufRuntime(bundle.llm_path, n_parallel=4, n_ctx_per_slot=256, n_threads=1) as rt:
        decode_tokens = rt._decode_tokens

        def spy(entries):
            if all(wants_logits for *_, wants_logits in entries):
                steps.append([seq_id for _, _, seq_id, _ in entries])
            decode_tokens(entries)

        rt._decode_tokens = spy
        generations = list(rt.generate(layout.prefix_ids, real_prompts, DecodingSettings(max_new_tokens=20)))
    assert {g.finish_reason for g in generations} == {"stop", "length"}
    assert [1, 2, 3, 4] in steps
    # One run of consecutive ids, two at least: holes and a lone slot are padded.
    assert all(ids == list(range(ids[0], ids[0] + len(ids))) and len(ids) >= 2 for ids in steps)
    assert [0, 1] in steps or any(ids[0] > 1 and len(ids) == 2 for ids in steps)


def test_thread_count_does_not_change_generation(bundle, layout) -> None:
    prompts = random_prompts(64, PROMPT_LENGTHS[:3], layout.suffix_ids)
    settings = DecodingSettings(max_new_tokens=5)
    _, one = generate_all(bundle, layout, prompts, 4, settings, threads=1)
    _, two = generate_all(bundle, layout, prompts, 4, settings, threads=2)
    assert one == two


def test_sampling_depends_on_key_and_seed_not_on_batch(bundle, layout) -> None:
    prompts = random_prompts(64, PROMPT_LENGTHS[:6], layout.suffix_ids)
    sampled = DecodingSettings(max_new_tokens=12, temperature=1.0, top_p=0.95, seed=5)
    _, single = generate_all(bundle, layout, prompts, 1, sampled)
    _, batched = generate_all(bundle, layout, prompts, 3, sampled)
    assert {k: g.token_ids for k, g in single.items()} == {k: g.token_ids for k, g in batched.items()}
    _, greedy = generate_all(bundle, layout, prompts, 3, DecodingSettings(max_new_tokens=12))
    _, reseeded = generate_all(bundle, layout, prompts, 3, DecodingSettings(max_new_tokens=12, temperature=1.0, seed=6))
    assert any(single[k].token_ids != greedy[k].token_ids for k in single)
    assert any(single[k].token_ids != reseeded[k].token_ids for k in single)


def test_mean_logprob_is_the_mean_of_the_chosen_tokens_logprobs(layout, runtime, real_prompts) -> None:
    settings = DecodingSettings(max_new_tokens=20)
    reasons = set()
    for prompt in real_prompts[:6]:
        (generation,) = runtime.generate(layout.prefix_ids, [prompt], settings)
        reasons.add(generation.finish_reason)
        chosen = list(generation.token_ids)
        rows = runtime.next_token_logits(
            layout.prefix_ids, prompt.embeddings, list(prompt.suffix_ids) + chosen
        )[len(prompt.suffix_ids) :]
        if generation.finish_reason == "stop":  # the end-of-generation token counts too
            chosen.append(int(rows[len(chosen)].argmax()))
            assert runtime.vocabulary.is_end_of_generation(chosen[-1])
        else:
            assert len(chosen) == settings.max_new_tokens
        logprobs = [log_softmax(rows[i].astype(np.float64))[t] for i, t in enumerate(chosen)]
        assert generation.mean_logprob == pytest.approx(float(np.mean(logprobs)), abs=1e-3)
        assert generation.mean_logprob < 0
    assert reasons == {"stop", "length"}


def test_prompts_are_pulled_only_when_a_slot_is_free(bundle, layout) -> None:
    prompts = random_prompts(64, PROMPT_LENGTHS, layout.suffix_ids)
    pulled: list[str] = []

    def stream():
        for prompt in prompts:
            pulled.append(prompt.key)
            yield prompt

    with GgufRuntime(bundle.llm_path, n_parallel=3, n_ctx_per_slot=256, n_threads=1) as rt:
        generations = rt.generate(layout.prefix_ids, stream(), DecodingSettings(max_new_tokens=5))
        next(generations)
        assert len(pulled) == 3
        rest = list(generations)
    assert len(rest) == len(prompts) - 1


def test_prompt_too_long_for_a_slot_is_an_error(bundle, layout) -> None:
    (prompt,) = random_prompts(64, [200], layout.suffix_ids)
    with GgufRuntime(bundle.llm_path, n_parallel=1, n_ctx_per_slot=128, n_threads=1) as rt:
        with pytest.raises(LlmRuntimeError, match="p0: prompt of .* exceeds the 128-token context"):
            list(rt.generate(layout.prefix_ids, [prompt], DecodingSettings(max_new_tokens=8)))


def test_wrong_embedding_width_is_an_error(runtime) -> None:
    with pytest.raises(LlmRuntimeError, match=r"soft tokens have shape \(3, 32\)"):
        runtime.next_token_logits([1], np.zeros((3, 32), np.float32), [5])


def test_unreadable_gguf_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(LlmRuntimeError, match="bad.gguf"):
        GgufRuntime(bad, n_parallel=1)
    with pytest.raises(LlmRuntimeError, match="bad.gguf"):
        GgufVocabulary.load(bad)
