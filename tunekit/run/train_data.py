"""Training data: files in, tokenized examples (input_ids + labels) out.

Four shapes are read: plain ``.txt`` files (a file or a folder of them), JSONL with ``text``, JSONL
with ``instruction`` / ``input`` / ``output``, and chat JSONL with ``messages: [{role, content}]`` (OpenAI's
shape; ShareGPT's ``conversations: [{from, value}]`` is read as the same). Text is packed into ``seq_len``
blocks (or one truncated example per document). Instruction records are rendered with a template or the
tokenizer's chat template; chat records always go through the chat template. With ``completion_only`` the
prompt tokens (for chats: every token outside an assistant turn) get label -100 so the loss is on the
answers alone, the habit of TRL, axolotl and LLaMA-Factory. ``pack_examples`` packs instruction and chat
examples into rows of ``seq_len`` with position ids restarting at each example, which transformers turns
into attention that stays inside each example (a block-diagonal causal mask on eager/SDPA, varlen on
FlashAttention). No torch here: examples are lists of ints, the collator (``train_progress``) makes tensors.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunekit.core.errors import UsageError

if TYPE_CHECKING:
    from tunekit.core.recipe_model import TrainSection

IGNORE_INDEX = -100
"""Label value the loss skips (PyTorch cross-entropy's ``ignore_index``)."""

PROMPT_TEMPLATE = (
    "Below is an instruction that describes a task{with_input}. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n{input_block}### Response:\n"
)
"""Alpaca's prompt, the default when a recipe names neither ``template`` nor ``chat_template``."""

Example = dict[str, list[int]]

SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system", "user": "user",
                  "assistant": "assistant", "tool": "tool"}
"""ShareGPT's ``from`` names -> the chat-template roles (``human``/``gpt`` are ShareGPT's own)."""


@dataclass
class TrainData:
    """Tokenized train and held-out examples, and what they were made from (for the report)."""

    train: list[Example]
    eval: list[Example] = field(default_factory=list)
    kind: str = "text"
    source: str = ""
    packed_from: int | None = None
    """How many examples ``train.pack_examples`` packed into the ``train`` rows (None: not packed)."""

    def tokens(self) -> int:
        return sum(len(e["input_ids"]) for e in self.train)


# -- reading -------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    """A data file's text; binary (parquet, a model file) or non-UTF-8 data is one clear error, not a traceback."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start}); training data is .txt or .jsonl "
                         "in UTF-8") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def check_chat(record: dict[str, Any], where: str) -> dict[str, Any]:
    """A chat record as ``{"messages": [{role, content}, ...]}`` (ShareGPT's shape converted), or a UsageError."""
    key = "messages" if "messages" in record else "conversations"
    turns = record[key]
    if not isinstance(turns, list) or not turns:
        raise UsageError(f"{where}: '{key}' must be a non-empty list of turns")
    messages = []
    for index, turn in enumerate(turns):
        at = f"{where}: {key}[{index}]"
        if not isinstance(turn, dict):
            raise UsageError(f"{at}: expected an object with 'role' and 'content', got {_type_name(turn)}")
        role, content = (turn.get("role"), turn.get("content")) if key == "messages" else (
            SHAREGPT_ROLES.get(str(turn.get("from"))), turn.get("value"))
        if not isinstance(role, str):
            wanted = "'role'" if key == "messages" else f"'from' (one of {', '.join(SHAREGPT_ROLES)})"
            raise UsageError(f"{at}: needs {wanted}")
        if not isinstance(content, str):
            name = "content" if key == "messages" else "value"
            raise UsageError(f"{at}: '{name}' must be a string, got {_type_name(content)}")
        messages.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in messages):
        raise UsageError(f"{where}: no assistant turn (nothing to learn from)")
    return {"messages": messages}


def check_record(record: Any, where: str) -> dict[str, Any]:
    """One JSONL record of a shape tunekit trains on, or a UsageError at ``file:line``.

    ``str(None)`` would train on the word "None" and an instruction without ``output`` on an empty
    answer; both are mistakes in the data, so they stop the run before any weight loads.
    """
    if isinstance(record, dict) and ({"messages", "conversations"} & record.keys()):
        return check_chat(record, where)
    if not isinstance(record, dict) or not ({"text", "instruction"} & record.keys()):
        raise UsageError(f"{where}: expected an object with 'text', 'instruction'/'output' or "
                         "'messages' (chat turns)")
    fields = ("text",) if "text" in record and "instruction" not in record else ("instruction", "output")
    for name in fields:
        if name not in record:
            raise UsageError(f"{where}: an 'instruction' record needs an '{name}' (the answer to train on)")
        if not isinstance(record[name], str):
            raise UsageError(f"{where}: '{name}' must be a string, got {_type_name(record[name])}")
    if "instruction" in record and record.get("input") is not None and not isinstance(record["input"], str):
        raise UsageError(f"{where}: 'input' must be a string or null, got {_type_name(record['input'])}")
    return record


def read_records(path: Path) -> list[dict[str, Any]]:
    """Records from a ``.txt`` file, a folder of ``.txt`` files, or a ``.jsonl`` file."""
    if path.is_dir():
        files = sorted(path.glob("*.txt"))
        if not files:
            raise UsageError(f"{path}: no .txt files in this folder")
        return [{"text": _read_text(f)} for f in files]
    if not path.is_file():
        raise UsageError(f"{path}: training data not found")
    if path.suffix in {".jsonl", ".json"}:
        records = []
        for number, line in enumerate(_read_text(path).splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as exc:
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
                raise UsageError(f"{path}:{number}: not a JSON line: {reason}") from None
            records.append(check_record(record, f"{path}:{number}"))
        if not records:
            raise UsageError(f"{path}: no records")
        return records
    return [{"text": _read_text(path)}]


# -- rendering and tokenizing --------------------------------------------------------------


def render_prompt(record: dict[str, Any], template: str | None, chat: bool, tokenizer: Any) -> str:
    """The prompt text of an instruction record (everything the loss should not be on)."""
    instruction = str(record.get("instruction", ""))
    extra = str(record.get("input") or "")
    if chat:
        if not getattr(tokenizer, "chat_template", None):
            raise UsageError("train.chat_template is set but this tokenizer has no chat template")
        content = f"{instruction}\n\n{extra}" if extra else instruction
        messages = [{"role": "user", "content": content}]
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    if template:
        try:
            return template.format_map({**record, "instruction": instruction, "input": extra})
        except (KeyError, IndexError, ValueError) as exc:
            raise UsageError(f"train.template: cannot fill {exc} from the record's fields") from None
    return PROMPT_TEMPLATE.format(
        instruction=instruction,
        with_input=", paired with an input that provides further context" if extra else "",
        input_block=f"### Input:\n{extra}\n\n" if extra else "",
    )


def encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def instruction_example(record: dict[str, Any], section: TrainSection, tokenizer: Any) -> Example:
    prompt = encode(tokenizer, render_prompt(record, section.template, section.chat_template, tokenizer))
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None and not section.chat_template else []
    completion = [*encode(tokenizer, str(record.get("output", ""))), tokenizer.eos_token_id]
    prompt = bos + prompt
    ids = (prompt + completion)[: section.seq_len]
    masked = [IGNORE_INDEX] * len(prompt) if section.completion_only else prompt
    labels = (masked + completion)[: section.seq_len]
    return {"input_ids": ids, "labels": labels}


def _chat_text(tokenizer: Any, messages: list[dict[str, str]], prompt: bool) -> str:
    from jinja2 import TemplateError

    try:
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt))
    except TemplateError as exc:
        raise UsageError(f"the tokenizer's chat template refused these turns: {exc}") from None


def chat_example(record: dict[str, Any], section: TrainSection, tokenizer: Any) -> Example:
    """A chat through the tokenizer's chat template, labels on the assistant turns only (``completion_only``).

    Each assistant turn's text is what rendering the chat up to and including that turn adds to the
    rendering up to it with the generation prompt, so the turn's end marker (``<|im_end|>``, ``<|eot_id|>``)
    is learned too. That needs a template whose renderings extend each other; one that rewrites earlier
    turns (e.g. dropping past reasoning) is refused rather than trained on text it never produces. Turns
    after the last assistant turn are left out: there is no answer in them to learn.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise UsageError("chat records ('messages') need a tokenizer with a chat template; this one has none")
    messages = record["messages"]
    ids: list[int] = []
    labels: list[int] = []
    rendered = ""
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _chat_text(tokenizer, messages[:index], prompt=True)
        full = _chat_text(tokenizer, messages[: index + 1], prompt=False)
        if not (prompt.startswith(rendered) and full.startswith(prompt)):
            raise UsageError("the tokenizer's chat template renders earlier turns differently once later turns "
                             "follow, so assistant turns cannot be told apart; use instruction records")
        before = encode(tokenizer, prompt[len(rendered):])
        answer = encode(tokenizer, full[len(prompt):])
        ids += before + answer
        labels += ([IGNORE_INDEX] * len(before) if section.completion_only else before) + answer
        rendered = full
    return {"input_ids": ids[: section.seq_len], "labels": labels[: section.seq_len]}


def pack_examples(examples: list[Example], seq_len: int) -> list[Example]:
    """Examples packed in order into rows of at most ``seq_len`` tokens, each row with ``position_ids``
    restarting at 0 for every example it holds.

    The restart is what keeps attention inside an example: transformers reads a row whose position ids
    go back to 0 as several sequences (no attention mask is passed, see ``train_progress.collate``). The
    first label of every example after the first is -100: the loss would otherwise ask the previous
    example's last token to predict it.
    """
    rows: list[Example] = []
    row: Example = {"input_ids": [], "labels": [], "position_ids": []}
    for example in examples:
        size = len(example["input_ids"])
        if row["input_ids"] and len(row["input_ids"]) + size > seq_len:
            rows.append(row)
            row = {"input_ids": [], "labels": [], "position_ids": []}
        labels = list(example["labels"])
        if row["input_ids"]:
            labels[0] = IGNORE_INDEX
        row["input_ids"] += example["input_ids"]
        row["labels"] += labels
        row["position_ids"] += list(range(size))
    if row["input_ids"]:
        rows.append(row)
    return rows


def text_examples(texts: list[str], section: TrainSection, tokenizer: Any) -> list[Example]:
    """Pack documents (joined by EOS) into full ``seq_len`` blocks, or truncate each one when not packing."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    docs = [encode(tokenizer, t) + eos for t in texts if t.strip()]
    if not section.packing:
        return [{"input_ids": d[: section.seq_len], "labels": d[: section.seq_len]} for d in docs if len(d) > 1]
    stream = [token for doc in docs for token in doc]
    size = section.seq_len
    blocks = [stream[i : i + size] for i in range(0, len(stream) - size + 1, size)]
    if not blocks and len(stream) > 1:
        blocks = [stream]
    return [{"input_ids": b, "labels": list(b)} for b in blocks]


def split_held_out(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Shuffle with the recipe's seed and hold out ``fraction`` (at least one example when asked)."""
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    if fraction <= 0 or len(shuffled) < 2:
        return shuffled, []
    n_eval = min(len(shuffled) - 1, max(1, round(len(shuffled) * fraction)))
    return shuffled[n_eval:], shuffled[:n_eval]


def build(section: TrainSection, tokenizer: Any, path: Path) -> TrainData:
    """Read, tokenize and split the training data a recipe's ``train`` section describes."""
    records = read_records(path)
    shapes = {"chat" if "messages" in r else "instruction" if "instruction" in r else "text" for r in records}
    if len(shapes) > 1:
        raise UsageError(f"{path}: mixes {' and '.join(sorted(shapes))} records; use one shape per file")
    kind = shapes.pop()
    if kind == "text":
        examples = text_examples([str(r["text"]) for r in records], section, tokenizer)
        examples = examples[: section.max_samples] if section.max_samples else examples
        if not examples:
            raise UsageError(f"{path}: too little text for one training example of {section.seq_len} tokens")
        train, held_out = split_held_out(examples, section.eval_split, section.seed)
        return TrainData(train=train, eval=held_out, kind=kind, source=str(path))
    if section.max_samples:
        records = records[: section.max_samples]
    make = chat_example if kind == "chat" else instruction_example
    examples = [make(r, section, tokenizer) for r in records]
    examples = [e for e in examples if any(label != IGNORE_INDEX for label in e["labels"])]
    if not examples:
        raise UsageError(f"{path}: every prompt fills train.seq_len={section.seq_len}; no answer token "
                         "is left to learn from (raise seq_len)")
    train, held_out = split_held_out(examples, section.eval_split, section.seed)
    if not section.pack_examples:
        return TrainData(train=train, eval=held_out, kind=kind, source=str(path))
    # held-out examples stay one per row: the eval loss means what it means unpacked
    return TrainData(train=pack_examples(train, section.seq_len), eval=held_out, kind=kind, source=str(path),
                     packed_from=len(train))
