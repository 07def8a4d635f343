"""An Ollama ``Modelfile`` next to the GGUF, so ``ollama create NAME -f Modelfile`` works unchanged.

Sampler settings come from the model's generation config (set by the recipe's sampler stage) and map
to Ollama's PARAMETER names. Ollama templates are Go templates, not Jinja: for the chat formats we
ship (ChatML: SmolLM2, Qwen2; Llama 3 headers) the equivalent Go template is written; for any other
the TEMPLATE line is left out and Ollama falls back to the GGUF's ``tokenizer.chat_template``.
Torch-free.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunekit.core.output_paths import inside

#: generation-config key -> Ollama PARAMETER
OLLAMA_PARAMS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "repetition_penalty": "repeat_penalty",
}

CHATML_TEMPLATE = """{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""
LLAMA3_TEMPLATE = """{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>

{{ .Content }}<|eot_id|>
{{- end }}<|start_header_id|>assistant<|end_header_id|>

"""


def ollama_template(chat_template: str | None) -> tuple[str | None, list[str]]:
    """(Go template, stop strings) for a Jinja chat template we recognise, else (None, [])."""
    if not chat_template:
        return None, []
    if "<|im_start|>" in chat_template:
        return CHATML_TEMPLATE, ["<|im_start|>", "<|im_end|>"]
    if "<|start_header_id|>" in chat_template:
        return LLAMA3_TEMPLATE, ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    return None, []


def _system_prompt(chat_template: str | None) -> str | None:
    """The default system message a ChatML template injects (SmolLM2 has one), to keep behaviour."""
    if not chat_template or "<|im_start|>system\n" not in chat_template:
        return None
    tail = chat_template.split("<|im_start|>system\n", 1)[1]
    text = tail.split("<|im_end|>", 1)[0]
    return text if "{{" not in text and "{%" not in text else None


def modelfile_text(gguf_name: str, generation: dict[str, Any], num_ctx: int,
                   chat_template: str | None) -> str:
    """The Modelfile: FROM, one PARAMETER per sampler setting, TEMPLATE/SYSTEM/stop when known."""
    lines = [f"FROM ./{gguf_name}", ""]
    sampling = generation.get("do_sample", True)
    for key, param in OLLAMA_PARAMS.items():
        value = generation.get(key)
        if value is None:
            continue
        if key == "temperature" and not sampling:
            value = 0.0
        lines.append(f"PARAMETER {param} {value}")
    if not sampling and "temperature" not in generation:
        lines.append("PARAMETER temperature 0.0")
    lines.append(f"PARAMETER num_ctx {int(num_ctx)}")
    template, stops = ollama_template(chat_template)
    for stop in stops:
        lines.append(f"PARAMETER stop {json.dumps(stop)}")
    system = _system_prompt(chat_template)
    if template is not None:
        lines += ["", f'TEMPLATE """{template}"""']
    if system:
        lines += ["", f'SYSTEM """{system}"""']
    return "\n".join(lines) + "\n"


def parse_modelfile(text: str) -> dict[str, Any]:
    """Parse the subset of the Modelfile grammar we write (FROM, PARAMETER, TEMPLATE, SYSTEM)."""
    out: dict[str, Any] = {"parameters": {}, "stop": []}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if rest.startswith('"""'):
            body = rest[3:]
            while '"""' not in body:
                body += "\n" + lines[i]
                i += 1
            rest = body[: body.index('"""')]
        if word == "PARAMETER":
            key, _, value = rest.partition(" ")
            if key == "stop":
                out["stop"].append(json.loads(value))
            else:
                out["parameters"][key] = float(value) if "." in value else int(value)
        elif word in {"FROM", "TEMPLATE", "SYSTEM"}:
            out[word.lower()] = rest
        else:
            raise ValueError(f"unknown Modelfile instruction {word!r}")
    return out


def write_modelfile(out_dir: Path, gguf_name: str, generation: dict[str, Any], num_ctx: int,
                    chat_template: str | None, *, filename: str = "Modelfile") -> Path:
    path = inside(Path(out_dir), filename)
    path.write_text(modelfile_text(gguf_name, generation, num_ctx, chat_template), encoding="utf-8")
    return path
