"""`seqchat repl` and the chat under it.

The chat's cache continuation is checked in this process against re-feeding the whole
conversation from scratch; the REPL is checked as a person uses it: the real program in a
pseudo-terminal driven with pexpect (and once with a pipe, as a script would).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import make_records, seqchat_executable, write_fasta
from seqchat.chat import Chat, ChatError, ChatModel, Utf8Stream, token_bytes, turn_text
from seqchat.llm.prompt import SEQUENCE_FIELD, PromptSpec, layout_for, render_chat, user_text
from seqchat.repl import continues_fasta, looks_like_sequence, printable
from seqchat.llm.runtime import DecodingSettings, GgufRuntime, SoftPrompt

pexpect = pytest.importorskip("pexpect")

MAX_NEW = 3000  # long answers, so that one can be interrupted
CONTEXT = 4096


# --- the chat, in this process -----------------------------------------------------------


@pytest.fixture(scope="module")
def runtime(tiny_bundle: Path):
    with GgufRuntime(tiny_bundle / "llm.gguf", n_parallel=1, n_ctx_per_slot=1024, n_threads=1) as rt:
        yield rt


@pytest.fixture(scope="module")
def fresh_runtime(tiny_bundle: Path):
    """A second runtime for the from-scratch runs, so that no cache state is shared."""
    with GgufRuntime(tiny_bundle / "llm.gguf", n_parallel=1, n_ctx_per_slot=1024, n_threads=1) as rt:
        yield rt


SPECS = {
    "stage-1 prompt and a system message": PromptSpec(user="{sequence}", system="You annotate genes."),
    "question before the sequence": PromptSpec(user="Q: {question}\n{sequence}"),
}


def soft_tokens(n: int = 9, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n, 64)) * 0.5).astype(np.float32)


def refeed(runtime: GgufRuntime, chat: Chat, settings: DecodingSettings):
    """Generate the last turn of `chat` again from an empty cache: the whole conversation up
    to its last question decoded at once through `GgufRuntime.generate`."""
    template = runtime.vocabulary.chat_template
    first = layout_for(runtime.vocabulary, chat.spec, chat.turns[0].question)
    suffix = list(first.suffix_ids)
    messages = chat.messages()
    for number in range(1, len(chat.turns)):
        suffix += chat.turns[number - 1].token_ids
        before = messages[: len(messages) - 2 * (len(chat.turns) - number)]
        suffix += runtime.vocabulary.tokenize(turn_text(template, before, chat.turns[number].question), False)
    prompt = SoftPrompt(chat.key, chat.embeddings, tuple(suffix))
    return next(runtime.generate(first.prefix_ids, [prompt], settings))


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_later_turns_from_the_cache_equal_refeeding_the_conversation(runtime, fresh_runtime, spec):
    settings = DecodingSettings(max_new_tokens=16)
    chat = Chat(runtime, spec, soft_tokens(), decoding=settings)
    for number, question in enumerate(["What does it do?", "Where is it expressed?", "Why?"]):
        pieces = list(chat.ask(question))
        turn = chat.turns[-1]
        assert len(chat.turns) == number + 1 and turn.token_ids, turn
        assert "".join(pieces).strip() == turn.answer
        if number:
            again = refeed(fresh_runtime, chat, settings)
            assert again.token_ids == turn.token_ids, f"turn {number + 1}"
            assert again.mean_logprob == pytest.approx(turn.mean_logprob, abs=1e-3)
    # the cache holds the conversation and nothing else
    assert chat.n_past == runtime_positions(runtime, chat.seq_id)


def runtime_positions(runtime: GgufRuntime, seq_id: int) -> int:
    import llama_cpp

    return int(llama_cpp.llama_memory_seq_pos_max(runtime._memory, seq_id)) + 1


def test_a_closed_stream_keeps_the_partial_answer_and_the_next_turn_follows_it(runtime, fresh_runtime):
    settings = DecodingSettings(max_new_tokens=MAX_NEW)
    chat = Chat(runtime, SPECS["stage-1 prompt and a system message"], soft_tokens(seed=3), decoding=settings)
    stream = chat.ask("What does it do?")
    shown = [next(stream) for _ in range(4)]
    assert chat.turns == []  # still generating
    stream.close()  # what the REPL does on Ctrl-C
    (turn,) = chat.turns
    assert turn.finish_reason == "interrupted"
    assert 4 <= len(turn.token_ids) < MAX_NEW
    assert "".join(shown).strip() == turn.answer
    assert chat.n_past == runtime_positions(runtime, chat.seq_id)
    short = DecodingSettings(max_new_tokens=12)
    chat.decoding = short
    list(chat.ask("Go on."))
    assert refeed(fresh_runtime, chat, short).token_ids == chat.turns[-1].token_ids


def test_a_stream_closed_before_it_starts_leaves_no_turn(runtime):
    chat = Chat(runtime, PromptSpec(), soft_tokens(), decoding=DecodingSettings(max_new_tokens=4))
    chat.ask("What?").close()
    assert chat.turns == [] and chat.n_past == 0
    list(chat.ask("What?"))
    assert len(chat.turns) == 1


def test_reset_forgets_the_conversation_and_repeats_turn_one(runtime):
    chat = Chat(runtime, PromptSpec(), soft_tokens(), decoding=DecodingSettings(max_new_tokens=8))
    first = "".join(chat.ask("What is it?"))
    list(chat.ask("And?"))
    chat.reset()
    assert chat.turns == [] and chat.n_past == 0 and runtime_positions(runtime, chat.seq_id) == 0
    assert "".join(chat.ask("What is it?")) == first


def test_a_turn_that_does_not_fit_the_context_is_refused(tiny_bundle: Path):
    with GgufRuntime(tiny_bundle / "llm.gguf", n_parallel=1, n_ctx_per_slot=64, n_threads=1) as small:
        chat = Chat(small, PromptSpec(), soft_tokens(), decoding=DecodingSettings(max_new_tokens=1000))
        list(chat.ask("What?"))
        assert chat.turns[-1].finish_reason in ("context", "stop")
        with pytest.raises(ChatError, match="context"):
            chat.ask("a long question " * 20)
    with pytest.raises(ChatError, match="empty"):
        chat.ask("   ")


def test_turn_text_is_what_the_template_adds_after_an_answer(runtime):
    template = runtime.vocabulary.chat_template
    spec = SPECS["stage-1 prompt and a system message"]
    first = user_text(Chat(runtime, spec, soft_tokens()).spec, "What?").replace(SEQUENCE_FIELD, "<s>")
    history = [{"role": "system", "content": "You annotate genes."},
               {"role": "user", "content": first}, {"role": "assistant", "content": "A kinase."}]
    whole = render_chat(template, [*history, {"role": "user", "content": "Where?"}])
    assert whole == render_chat(template, history[:2]) + "A kinase." + turn_text(template, history, "Where?")
    assert turn_text(template, history, "Where?") == (
        "<|im_end|>\n<|im_start|>user\nWhere?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_multibyte_characters_split_over_byte_tokens_stream_whole(runtime):
    text = "héllo ✓ ü 🧬"
    tokens = runtime.vocabulary.tokenize(text, False)
    assert len(tokens) > len(text.split())  # byte fallback: several tokens per character
    stream = Utf8Stream()
    pieces = [stream.feed(token_bytes(runtime, token)) for token in tokens] + [stream.flush()]
    assert "".join(pieces).strip() == text
    assert not any("\ufffd" in piece for piece in pieces)


def test_input_classification():
    assert looks_like_sequence("ACGUACGUAC") and looks_like_sequence("gattaca")
    assert looks_like_sequence("ACGTACGTAC\nGGCCA")
    assert not looks_like_sequence("hand") and not looks_like_sequence("such a hand")
    assert not looks_like_sequence("what does it do?") and not looks_like_sequence("cat")
    assert continues_fasta("ACGTN") and not continues_fasta("what is it?")
    assert not continues_fasta(":seqs") and not continues_fasta("Function?")
    assert printable("a\x1b[2Jb\tc\nd\x07") == "a\ufffd[2Jb\tc\nd\ufffd"


# --- the program ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chat_fasta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fasta(tmp_path_factory.mktemp("chat") / "tiny.fa", make_records(3, seed=3, lengths=[40, 90, 12]))


@pytest.fixture(scope="module")
def expected_answers(tiny_bundle: Path, chat_fasta: Path):
    """answer(sequence id, questions) -> the streamed text of each turn, in this process."""
    import torch

    from seqchat.annotate import with_decoding
    from seqchat.bundle import load_bundle
    from seqchat.io.sequences import read_records

    records = {r.id: r.sequence for r in read_records([chat_fasta])}
    threads = torch.get_num_threads()
    bundle = load_bundle(str(tiny_bundle))
    model = ChatModel.load(bundle, threads=1, context=CONTEXT,
                           decoding=with_decoding(bundle.decoding, max_new_tokens=MAX_NEW))
    torch.set_num_threads(threads)

    def answer(identifier: str, questions: list[str]) -> list[str]:
        """With one torch thread, as `seqchat repl --threads 1` encodes."""
        try:
            torch.set_num_threads(1)
            chat = model.chat(records[identifier], key=identifier)
            return [printable("".join(chat.ask(q))) for q in questions]
        finally:
            torch.set_num_threads(threads)

    yield answer
    model.close()


def repl_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(SEQCHAT_HOME=str(home), OMP_NUM_THREADS="1", TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1")
    return env


def repl_args(bundle: Path, *extra: str) -> list[str]:
    return ["repl", "-m", str(bundle), "--threads", "1", "--max-new-tokens", str(MAX_NEW),
            "--context", str(CONTEXT), *extra]


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def prompt_of(identifier: str, mark: str = ">") -> re.Pattern[str]:
    """A fresh prompt: prompt_toolkit turns bracketed paste on as it starts reading a line
    (redraws while typing do not), then draws `ID> ` (the space as a cursor move)."""
    return re.compile(r"\x1b\[\?2004h[^\n]*?" + re.escape(identifier + mark))


def screen_text(raw: str) -> str:
    return ANSI.sub("", raw).replace("\r\n", "\n").replace("\r", "")


def ask(child, question: str, identifier: str) -> str:
    """Type a question, wait for the next prompt; the text written in between."""
    child.sendline(question)
    child.expect_exact("\x1b[?2004l")  # the line is accepted: prompt_toolkit lets go
    child.expect(prompt_of(identifier))
    return screen_text(child.before)


def test_a_session_in_a_terminal(tiny_bundle: Path, chat_fasta: Path, tmp_path: Path, expected_answers):
    started = time.monotonic()
    child = pexpect.spawn(
        seqchat_executable(), [*repl_args(tiny_bundle, str(chat_fasta))], cwd=str(tmp_path),
        env=repl_env(tmp_path / "home"), encoding="utf-8", timeout=120, dimensions=(40, 160),
    )
    try:
        child.expect(prompt_of("s0000"))
        assert "using s0000 (40 nt)" in screen_text(child.before)

        listing = ask(child, ":seqs", "s0000")
        assert re.search(r"\* s0000\s+40 nt", listing)
        assert "s0001" in listing and "s0002" in listing

        # a question: the answer streams out, then a new prompt
        (expected,) = expected_answers("s0000", ["What does it do?"])
        assert expected.strip()
        assert expected in ask(child, "What does it do?", "s0000")

        # Ctrl-C while an answer is being written: the answer stops, the session stays.
        # The program is stopped as soon as the answer's first characters appear, so that
        # the interrupt arrives while it is generating however fast the machine is. (Not
        # at the first output after the line is read: prompt_toolkit may still hold the
        # terminal in raw mode then, and Ctrl-C would be a byte rather than a signal.)
        _, second = expected_answers("s0000", ["What does it do?", "And where is it expressed?"])
        answer_start = second.lstrip().split("\n")[0][:6]
        assert answer_start
        child.sendline("And where is it expressed?")
        child.expect_exact("\x1b[?2004l")
        child.expect_exact(answer_start)
        os.kill(child.pid, signal.SIGSTOP)
        try:
            child.sendcontrol("c")
            time.sleep(0.2)
        finally:
            os.kill(child.pid, signal.SIGCONT)
        child.expect_exact("[interrupted]")
        child.expect(prompt_of("s0000"))
        after_interrupt = ask(child, "Why?", "s0000")
        assert after_interrupt.strip()

        # :use switches sequence (a new conversation)
        assert "using s0001 (90 nt): new conversation" in ask(child, ":use s0001", "s0001")
        assert ask(child, "What is this?", "s0001").strip()

        # a pasted line of nucleotides, a FASTA record typed line by line, and one pasted
        # at once (bracketed paste)
        assert "pasted pasted1 (16 nt)" in ask(child, "ACGUACGUAGCUAGCU", "pasted1")
        child.sendline(">mine a typed record")
        child.expect(prompt_of("...", mark=""))
        child.sendline("ACGUACGUAC")
        child.sendline("GGCCAAUU")
        assert "pasted mine (18 nt)" in ask(child, "", "mine")
        child.send("\x1b[200~>clip pasted\nACGTACGTAC\nTTTT\x1b[201~")
        assert "pasted clip (14 nt)" in ask(child, "", "clip")
        assert "s0000" in ask(child, ":seqs", "clip")

        # Ctrl-C at the prompt drops the line and stays
        child.send("half a question")
        child.sendcontrol("c")
        child.expect(prompt_of("clip"))

        assert "wrote 4 turns" in ask(child, ":save transcript.md", "clip")
        assert "error: no sequence 'nope'" in ask(child, ":use nope", "clip")

        child.sendcontrol("d")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, child.signalstatus
    transcript = (tmp_path / "transcript.md").read_text()
    for text in ("# seqchat transcript", "## s0000 (40 nt)", "## s0001 (90 nt)",
                 "**You:** What does it do?", f"**seqchat:** {expected.strip()}",
                 "**You:** And where is it expressed?", "*(interrupted)*",
                 "**You:** Why?", "**You:** What is this?"):
        assert text in transcript, text
    history = (tmp_path / "home" / "repl_history").read_text()
    assert "+What does it do?" in history and "+:use s0001" in history
    print(f"terminal session: {time.monotonic() - started:.1f}s")


def test_a_scripted_session(tiny_bundle: Path, chat_fasta: Path, tmp_path: Path, expected_answers):
    """Standard input not a terminal: plain lines in, only answers (and listings) out."""
    script = ":use s0001\nWhat does it do?\nAnd then?\n:use s0002\nWhat is it?\n:save t.md\n:quit\nNever asked?\n"
    result = subprocess.run(
        [seqchat_executable(), *repl_args(tiny_bundle, str(chat_fasta))], input=script,
        capture_output=True, text=True, cwd=tmp_path, env=repl_env(tmp_path / "home"), timeout=300,
    )
    assert result.returncode == 0, result.stderr
    answers = expected_answers("s0001", ["What does it do?", "And then?"])
    answers += expected_answers("s0002", ["What is it?"])
    assert result.stdout == "".join(answer + "\n" for answer in answers)
    assert "wrote 3 turns" in result.stderr
    assert not (tmp_path / "home").exists()  # no history file without a terminal


def test_a_scripted_session_fails_on_a_bad_line_and_on_bad_input(tiny_bundle: Path, chat_fasta: Path, tmp_path: Path):
    result = subprocess.run(
        [seqchat_executable(), *repl_args(tiny_bundle, str(chat_fasta))], input=":use nope\n:nonsense\n",
        capture_output=True, text=True, cwd=tmp_path, env=repl_env(tmp_path), timeout=300,
    )
    assert result.returncode == 1
    assert "error: no sequence 'nope'" in result.stderr and "error: unknown command :nonsense" in result.stderr
    missing = subprocess.run(
        [seqchat_executable(), *repl_args(tiny_bundle, str(tmp_path / "missing.fa"))], input="",
        capture_output=True, text=True, cwd=tmp_path, env=repl_env(tmp_path), timeout=60,
    )
    assert missing.returncode == 2 and "missing.fa" in missing.stderr


# --- evidence: :hits and the grounded prompt ------------------------------------------------


@pytest.fixture
def grounded_bundle(bundle_copy, tmp_path: Path) -> tuple[Path, Path]:
    """The tiny bundle with {evidence} in its prompt, a reference holding the first query
    of the FASTA, and nothing like the second."""
    import json
    import random

    import yaml

    rng = random.Random(3)
    references = [{"id": f"ref{i}", "sequence": "".join(rng.choice("ACGT") for _ in range(200)),
                   "description": f"family {i} RNA. Rfam RNA type: Gene."} for i in range(12)]
    bundle = bundle_copy()
    (bundle / "refs.jsonl").write_text("".join(json.dumps(row) + "\n" for row in references))
    config = yaml.safe_load((bundle / "seqchat.yaml").read_text())
    config["prompt"].update(user="{sequence}\n{evidence}\n{question}", question="Describe this sequence.",
                            evidence_tokens=48)
    config["reference"] = "refs.jsonl"
    (bundle / "seqchat.yaml").write_text(yaml.safe_dump(config))
    fasta = write_fasta(tmp_path / "q.fa", [("q1", references[4]["sequence"]), ("q2", "ACGT" * 30)])
    return bundle, fasta


def test_a_grounded_chat_decodes_what_annotate_decodes(grounded_bundle, tmp_path: Path, monkeypatch) -> None:
    """Turn 1 of a chat about a sequence shows its hits as annotate's prompt does, and so
    generates the same tokens."""
    from seqchat.annotate import Annotator
    from seqchat.io.sequences import read_records

    bundle, fasta = grounded_bundle
    monkeypatch.setenv("SEQCHAT_HOME", str(tmp_path / "home"))
    record = next(iter(read_records([str(fasta)])))
    settings = DecodingSettings(max_new_tokens=12)
    with ChatModel.load(str(bundle), threads=1, context=1024, decoding=settings) as model:
        hits = model.hits(record.sequence)
        assert hits and hits[0].reference_id == "ref4" and hits[0].identity == 100.0
        chat = model.chat(record.sequence, key=record.id)
        assert chat.evidence.startswith("Hit 1: family 4 RNA (100% identity")
        list(chat.ask("Describe this sequence."))
        assert "family 4 RNA" in chat.messages()[-2]["content"]
        matrix = model.soft_tokens(record.sequence)
    with Annotator.load(str(bundle), threads=1, parallel=1) as annotator:
        [(_record, served_hits)] = list(annotator.evidence.searched([record]))
        assert served_hits == hits
        prompt = SoftPrompt(record.id, matrix, annotator._suffix(served_hits))
        generation = next(annotator.runtime.generate(annotator.layout.prefix_ids, [prompt], settings))
    assert generation.token_ids == chat.turns[0].token_ids


def test_hits_shows_the_evidence_of_the_annotate_rows(grounded_bundle, tmp_path: Path) -> None:
    from seqchat.io.tables import read_table

    bundle, fasta = grounded_bundle
    env = repl_env(tmp_path / "home")
    result = subprocess.run(
        [seqchat_executable(), *repl_args(bundle, str(fasta))],
        input=":hits\n:use q2\n:hits\n", capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    header, *table = result.stdout.splitlines()
    assert header.split("\t") == ["hit", "reference", "identity", "coverage", "evalue", "name"]
    assert table and table[0].split("\t")[:2] == ["1", "ref4"] and table[0].endswith("\tfamily 4 RNA")
    assert "q2: no reference hit passes the E-value cut-off" in result.stderr
    out = tmp_path / "rows.tsv"
    annotated = subprocess.run(
        [seqchat_executable(), "annotate", str(fasta), "-m", str(bundle), "-o", str(out), "-t", "1",
         "--max-new-tokens", "4"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )
    assert annotated.returncode == 0, annotated.stderr
    row = read_table(out)[1][0]
    assert table[0].split("\t")[1:5] == [row["top_hit"], row["identity"], row["coverage"], row["evalue"]]


def test_hits_without_a_reference_says_so(tiny_bundle: Path, chat_fasta: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [seqchat_executable(), *repl_args(tiny_bundle, str(chat_fasta))], input=":hits\n",
        capture_output=True, text=True, cwd=tmp_path, env=repl_env(tmp_path / "home"), timeout=300,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert "error: no reference is searched" in result.stderr


def test_save_keeps_an_existing_transcript_unless_told(tiny_bundle: Path, chat_fasta: Path, tmp_path: Path):
    (tmp_path / "t.md").write_text("an earlier session\n")

    def session(script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [seqchat_executable(), *repl_args(tiny_bundle, str(chat_fasta))], input=script,
            capture_output=True, text=True, cwd=tmp_path, env=repl_env(tmp_path / "home"), timeout=300,
        )

    refused = session(":use s0001\nWhat does it do?\n:save t.md\n")
    assert refused.returncode == 1 and ":save! t.md overwrites it" in refused.stderr
    assert (tmp_path / "t.md").read_text() == "an earlier session\n"
    forced = session(":use s0001\nWhat does it do?\n:save! t.md\n")
    assert forced.returncode == 0, forced.stderr
    assert "wrote 1 turn to" in forced.stderr and "What does it do?" in (tmp_path / "t.md").read_text()
