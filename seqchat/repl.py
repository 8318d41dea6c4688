"""`seqchat repl`: an interactive chat about sequences.

Input, one line at a time (a paste of several lines is taken whole):

- a line starting with `:` is a command (`:help` lists them);
- a line starting with `>` starts a FASTA record: the lines after it are its sequence, up
  to an empty line (or the next header, command or question);
- a line of nucleotide letters alone (at least 10, or at least 4 of A, C, G, T, U, N) is a
  pasted sequence, named `pasted1`, `pasted2`, ...;
- anything else is a question about the current sequence.

Each sequence has its own conversation, continued in the LLM's KV cache (`seqchat.chat`);
switching sequences (`:use`, a paste) or `:reset` starts a new one. Every turn of the
session is kept for `:save`.

On a terminal, prompt_toolkit edits lines and keeps a history file; Ctrl-C stops an answer
(or clears the line) and stays, Ctrl-D leaves. When standard input is not a terminal, lines
are read plainly and nothing but answers goes to stdout, so a session can be scripted:

    printf ':use YLL064C\\nWhat does it do?\\n' | seqchat repl genes.fa > answers.txt

A scripted session exits 1 if any of its lines failed, and 130 on Ctrl-C.
"""

from __future__ import annotations

import datetime
import io
import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from seqchat import __version__
from seqchat.errors import SeqchatError
from seqchat.io.sequences import SequenceInputError, SequenceRecord, canonical_sequence

if TYPE_CHECKING:
    from seqchat.chat import Chat, ChatModel, Turn

HELP = """\
Paste a sequence (a line of nucleotides) or a FASTA record (a '>' line, then its sequence
lines, then an empty line), then ask questions about it in plain words.

  :seqs          list the loaded sequences (* marks the current one)
  :use ID        talk about sequence ID (starts a new conversation)
  :hits          the current sequence's reference hits (the evidence annotate shows)
  :load FILE     load the sequences of a FASTA file (plain or gzip)
  :reset         forget the current conversation
  :save FILE     write every turn of this session to FILE (Markdown; :save! overwrites)
  :help          this text
  :quit          leave (or Ctrl-D)

Ctrl-C stops an answer; what was written so far stays in the conversation."""

_IUPAC_LINE = re.compile(r"[ACGTURYSWKMBDHVN]+", re.IGNORECASE)
_PLAIN_BASES = frozenset("ACGTUN")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def looks_like_sequence(text: str) -> bool:
    """Lines of nucleotide letters only: at least 10 letters, or 4 of A, C, G, T, U, N
    (so that a short word such as "bad" or "hand" is still a question)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines or not all(_IUPAC_LINE.fullmatch(line) for line in lines):
        return False
    letters = "".join(lines).upper()
    return len(letters) >= 10 or (len(letters) >= 4 and set(letters) <= _PLAIN_BASES)


def continues_fasta(text: str) -> bool:
    """Whether a line after a '>' header is more of its sequence (one word, no '?')."""
    return bool(text) and text[0] not in ":>" and not any(c.isspace() or c == "?" for c in text)


def printable(text: str) -> str:
    """Model text made safe for a terminal: control characters (but newline and tab)
    become U+FFFD, so that no escape sequence reaches the terminal."""
    return _CONTROL.sub("\ufffd", text)


@dataclass
class Conversation:
    record: SequenceRecord
    turns: list[Turn] = field(default_factory=list)


class Repl:
    """The state of a session and what each input line does; reading lines and the
    terminal belong to `run_repl`."""

    def __init__(self, model: ChatModel, out: TextIO, err: TextIO, interactive: bool) -> None:
        self.model = model
        self.out = out
        self.err = err
        self.interactive = interactive
        self.records: dict[str, SequenceRecord] = {}
        self.current: SequenceRecord | None = None
        self.chat: Chat | None = None
        self.conversations: list[Conversation] = []
        self.pending: list[str] | None = None
        self.errors = 0
        self._pasted = 0

    # --- output --------------------------------------------------------------------------

    def say(self, message: str) -> None:
        """A status message (stderr, so that stdout holds only answers and listings)."""
        self.out.flush()
        print(message, file=self.err, flush=True)

    def error(self, message: str) -> None:
        self.errors += 1
        self.say(f"error: {message}")

    def prompt(self) -> str:
        if self.pending is not None:
            return "... "
        return f"{self.current.id}> " if self.current else "seqchat> "

    # --- sequences -----------------------------------------------------------------------

    def add_records(self, records: Iterable[SequenceRecord], origin: str) -> list[SequenceRecord]:
        """Add records (all or none); an id already loaded must hold the same sequence."""
        fresh: dict[str, SequenceRecord] = {}
        added: list[SequenceRecord] = []
        for record in records:
            known = self.records.get(record.id) or fresh.get(record.id)
            if known is not None and known.sequence != record.sequence:
                raise SequenceInputError(
                    f"{origin}: id {record.id!r} is already loaded with another sequence"
                )
            if known is None:
                fresh[record.id] = record
            added.append(known or record)
        self.records.update(fresh)
        return added

    def load(self, path: str) -> None:
        from seqchat.io.sequences import read_records

        path = os.path.expanduser(path)
        if not os.path.isfile(path):
            raise SequenceInputError(f"{path}: no such file")
        added = self.add_records(list(read_records([path])), path)
        self.say(f"loaded {len(added)} sequence{'s' * (len(added) != 1)} from {path}")
        if self.current is None and added:
            self.use(added[0].id)

    def paste(self, header: str | None, sequence_text: str) -> None:
        if header:
            fields = header.split(maxsplit=1)
            identifier = fields[0] if fields else ""
            description = fields[1] if len(fields) == 2 else ""
        else:
            identifier, description = "", ""
        if not identifier:
            self._pasted += 1
            while f"pasted{self._pasted}" in self.records:
                self._pasted += 1
            identifier = f"pasted{self._pasted}"
        try:
            sequence = canonical_sequence(sequence_text)
        except SequenceInputError as error:
            raise SequenceInputError(f"pasted sequence {identifier!r}: {error}") from None
        record = SequenceRecord(identifier, description, sequence, "<pasted>", len(self.records))
        (added,) = self.add_records([record], "pasted sequence")
        self.say(f"pasted {added.id} ({added.length} nt)")
        self.use(added.id)

    def paste_fasta(self, text: str) -> None:
        """A pasted FASTA text with one or more records; the last becomes current."""
        self.pending = None
        for line in text.strip().splitlines():
            line = line.strip()
            if line.startswith(">"):
                self.finish_pending()
                self.pending = [line]
            elif line and self.pending is not None:
                self.pending.append(line)
        self.finish_pending()

    def finish_pending(self) -> None:
        if self.pending is None:
            return
        header, *lines = self.pending
        self.pending = None
        self.paste(header[1:].strip() or None, "".join(lines))

    def use(self, identifier: str) -> None:
        record = self.records.get(identifier)
        if record is None:
            raise SeqchatError(f"no sequence {identifier!r} (:seqs lists them)")
        if self.current is not None and self.current.id == identifier and self.chat is not None:
            self.say(f"already talking about {identifier}")
            return
        if self.chat is not None:
            self.chat.close()
            self.chat = None
        self.current = record
        self.chat = self.model.chat(record.sequence, key=record.id)
        self.conversations.append(Conversation(record, self.chat.turns))
        self.say(f"using {record.id} ({record.length} nt): new conversation")

    def reset(self) -> None:
        if self.current is None or self.chat is None:
            raise SeqchatError("no conversation to reset")
        self.chat.reset()
        self.conversations.append(Conversation(self.current, self.chat.turns))
        self.say(f"new conversation about {self.current.id}")

    # --- input ---------------------------------------------------------------------------

    def handle_input(self, text: str) -> bool:
        """One input (a line, or a paste of several); False means leave."""
        stripped = text.strip()
        if "\n" in stripped and self.pending is None:
            if stripped.startswith(">"):
                self.paste_fasta(stripped)
                return True
            if looks_like_sequence(stripped):
                self.paste(None, stripped)
                return True
            if not stripped.startswith(":"):
                self.ask(stripped)
                return True
        keep_going = True
        for line in stripped.splitlines() or [""]:
            keep_going = self.handle_line(line)
            if not keep_going:
                break
        return keep_going

    def handle_line(self, line: str) -> bool:
        text = line.strip()
        if self.pending is not None:
            if continues_fasta(text):
                self.pending.append(text)
                return True
            self.finish_pending()
        if not text:
            return True
        if text.startswith(":"):
            return self.command(text)
        if text.startswith(">"):
            self.pending = [text]
            return True
        if looks_like_sequence(text):
            self.paste(None, text)
            return True
        self.ask(text)
        return True

    def command(self, text: str) -> bool:
        name, _, argument = text[1:].strip().partition(" ")
        argument = argument.strip()
        name = name.lower()
        if name in ("quit", "q", "exit"):
            return False
        if name in ("help", "h", "?"):
            print(HELP, file=self.out, flush=True)
        elif name == "seqs":
            self.list_sequences()
        elif name == "use":
            if not argument:
                raise SeqchatError("usage: :use ID")
            self.use(argument)
        elif name == "load":
            if not argument:
                raise SeqchatError("usage: :load FILE")
            self.load(argument)
        elif name == "hits":
            self.show_hits()
        elif name == "reset":
            self.reset()
        elif name in ("save", "save!"):
            if not argument:
                raise SeqchatError("usage: :save FILE (or :save! FILE to overwrite it)")
            self.save(argument, overwrite=name == "save!")
        else:
            raise SeqchatError(f"unknown command :{name} (:help lists the commands)")
        return True

    def list_sequences(self) -> None:
        if not self.records:
            self.say("no sequences yet: paste one, or :load FILE")
            return
        for record in self.records.values():
            mark = "*" if self.current is not None and record.id == self.current.id else " "
            description = f"  {record.description}" if record.description else ""
            print(f"{mark} {record.id}\t{record.length} nt{description}", file=self.out)
        self.out.flush()

    def show_hits(self) -> None:
        """The current sequence's hits, best first, with the columns annotate writes of the
        best one; a grounded prompt shows the model the same hits."""
        if self.current is None:
            raise SeqchatError("no sequence yet: paste one, :load FILE or :use ID")
        hits = self.model.hits(self.current.sequence)
        if hits is None:
            raise SeqchatError("no reference is searched (the bundle has none; see --reference)")
        if not hits:
            self.say(f"{self.current.id}: no reference hit passes the E-value cut-off")
            return
        from seqchat.homology.evidence import evidence_cells, hit_name

        print("hit\treference\tidentity\tcoverage\tevalue\tname", file=self.out)
        for number, hit in enumerate(hits, 1):
            cells = evidence_cells([hit])
            print(f"{number}\t{cells['top_hit']}\t{cells['identity']}\t{cells['coverage']}\t"
                  f"{cells['evalue']}\t{printable(hit_name(hit.description))}", file=self.out)
        self.out.flush()

    def ask(self, question: str) -> None:
        if self.chat is None:
            raise SeqchatError("no sequence yet: paste one, :load FILE or :use ID")
        stream = self.chat.ask(question)
        wrote = False
        try:
            for piece in stream:
                self.out.write(printable(piece))
                self.out.flush()
                wrote = True
        except KeyboardInterrupt:
            stream.close()
            self.out.write("\n")
            self.out.flush()
            self.say("[interrupted]")
            if not self.interactive:
                raise
            return
        finally:
            stream.close()
        if not wrote and self.interactive:
            self.out.write("(no answer)")
        self.out.write("\n")
        self.out.flush()
        turn = self.chat.turns[-1] if self.chat.turns else None
        if turn is not None and turn.finish_reason == "length":
            self.say(f"[cut at {len(turn.token_ids)} tokens: --max-new-tokens]")
        elif turn is not None and turn.finish_reason == "context":
            self.say("[the conversation fills its context: :reset to go on]")

    # --- transcript ----------------------------------------------------------------------

    def transcript(self) -> str:
        settings = self.model.decoding
        bundle = self.model.bundle
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        lines = [
            "# seqchat transcript",
            "",
            f"- seqchat: {__version__}",
            f"- bundle: {bundle.name} ({bundle.root})",
            f"- decoding: max_new_tokens={settings.max_new_tokens} "
            f"temperature={settings.temperature} top_p={settings.top_p} seed={settings.seed}",
            f"- saved: {now.isoformat()}",
        ]
        for conversation in self.conversations:
            if not conversation.turns:
                continue
            record = conversation.record
            header = f">{record.id} {record.description}".rstrip()
            wrapped = [record.sequence[i : i + 60] for i in range(0, len(record.sequence), 60)]
            lines += ["", f"## {record.id} ({record.length} nt)", "", "```", header, *wrapped, "```"]
            for turn in conversation.turns:
                note = " *(interrupted)*" if turn.finish_reason == "interrupted" else ""
                lines += ["", f"**You:** {turn.question}", "", f"**seqchat:** {printable(turn.answer)}{note}"]
        return "\n".join(lines) + "\n"

    def save(self, path: str, overwrite: bool = False) -> None:
        """Write the transcript; an existing file is kept unless `overwrite` (`:save!`)."""
        target = Path(os.path.expanduser(path))
        if target.exists() and not overwrite:
            raise SeqchatError(f"{path} exists; :save! {path} overwrites it")
        n_turns = sum(len(c.turns) for c in self.conversations)
        temporary = target.with_name(f".{target.name}.partial")
        try:
            temporary.write_text(self.transcript(), encoding="utf-8")
            os.replace(temporary, target)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            raise SeqchatError(f"{path}: cannot write the transcript ({error.strerror})") from None
        self.say(f"wrote {n_turns} turn{'s' * (n_turns != 1)} to {target}")


# --- reading lines -----------------------------------------------------------------------


def default_history_path() -> Path:
    from seqchat.home import seqchat_home

    return seqchat_home() / "repl_history"


def terminal_reader(history: Path | None, warn: Callable[[str], None]) -> Callable[[str], str]:
    """prompt_toolkit: line editing, history (a file, when given) and bracketed paste."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory, History, InMemoryHistory

    store: History = InMemoryHistory()
    if history is not None:
        try:
            history.parent.mkdir(parents=True, exist_ok=True)
            history.touch(exist_ok=True)
            store = FileHistory(str(history))
        except OSError as error:
            warn(f"warning: no history file ({history}: {error.strerror})")
    session: PromptSession[str] = PromptSession(history=store)
    return lambda message: session.prompt(message)


def plain_reader(stream: TextIO) -> Callable[[str], str]:
    def read(_message: str) -> str:
        line = stream.readline()
        if not line:
            raise EOFError
        return line.rstrip("\r\n")

    return read


def run_repl(
    model_name: str,
    inputs: Iterable[str],
    *,
    threads: int | None,
    device: str,
    context: int,
    decoding_overrides: dict[str, object],
    history: Path | None,
    allow_external_paths: bool = False,
    trust_remote_code: bool = False,
    references: Iterable[str | Path] = (),
    bundle_reference: bool = True,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run a session; returns the exit code."""
    from seqchat.annotate import with_decoding
    from seqchat.bundle import load_bundle
    from seqchat.chat import ChatModel
    from seqchat.io.sequences import read_records

    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    interactive = _is_terminal(stdin) and _is_terminal(stdout)
    records = list(read_records(list(inputs))) if inputs else []  # bad input fails first
    bundle = load_bundle(
        model_name, allow_external_paths=allow_external_paths, trust_remote_code=trust_remote_code
    )
    if interactive:
        print(f"seqchat {__version__}: loading bundle {bundle.name} ...", file=stderr, flush=True)
    model = ChatModel.load(
        bundle,
        device=device,
        threads=threads,
        context=context,
        decoding=with_decoding(bundle.decoding, **decoding_overrides),
        references=references,
        bundle_reference=bundle_reference,
    )
    with model:
        repl = Repl(model, stdout, stderr, interactive)
        if records:
            repl.add_records(records, "input")
            repl.use(records[0].id)
        if interactive:
            repl.say("paste a sequence or FASTA record, ask a question; :help for commands, Ctrl-D to leave")
            read = terminal_reader(history, repl.say)
        else:
            read = plain_reader(stdin)
        _loop(repl, read)
        if repl.chat is not None:
            repl.chat.close()
    return 1 if repl.errors and not interactive else 0


def _loop(repl: Repl, read: Callable[[str], str]) -> None:
    while True:
        try:
            line = read(repl.prompt())
        except EOFError:
            if repl.interactive:
                repl.out.write("\n")
            _run(repl, repl.finish_pending)
            return
        except KeyboardInterrupt:
            if not repl.interactive:
                raise
            repl.pending = None  # Ctrl-C at the prompt drops the line (and a pending paste)
            continue
        if _run(repl, lambda: repl.handle_input(line)) is False:
            _run(repl, repl.finish_pending)
            return


def _run(repl: Repl, action: Callable[[], object]) -> object:
    """Run one action; a user-facing error becomes a message and the session goes on."""
    try:
        return action()
    except KeyboardInterrupt:
        if not repl.interactive:
            raise
        repl.say("[interrupted]")
    except SeqchatError as error:
        repl.error(str(error).splitlines()[0] if str(error) else type(error).__name__)
    except OSError as error:
        repl.error(f"{error.filename or 'input'}: {error.strerror or error}")
    return None


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return False
