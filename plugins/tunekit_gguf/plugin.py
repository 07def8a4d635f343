"""GGUF export for llama.cpp, Ollama and LM Studio: the ``gguf`` exporter plugin.

``output.formats: [hf, gguf:q4_k_m]`` writes ``<name>-Q4_K_M.gguf`` and an Ollama ``Modelfile`` into
the output folder. F32/F16/BF16/Q8_0 (and Q4_0 without llama.cpp) are encoded by the ``gguf``
package; K-quants, IQ4_XS and Q4_0 go through llama.cpp's own quantizer from an F16 file. When
llama-cpp-python is installed the file is loaded back in llama.cpp, generates, and its perplexity is
measured on the run's held-out text. Torch-free at import; the work is in submodules.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from tunekit import Effects, Exporter, PluginParams, RelativeName, Requirements

if TYPE_CHECKING:
    from tunekit import StageContext

GGUFTypeName = Literal["f32", "f16", "bf16", "q8_0", "q4_0", "q6_k", "q5_k_m", "q5_k_s", "q4_k_m", "q4_k_s",
                       "iq4_xs", "q3_k_l", "q3_k_m", "q3_k_s", "q2_k"]


class GGUFParams(PluginParams):
    type: GGUFTypeName = Field("q4_k_m", description="GGUF file type (llama-quantize's names, lowercase)")
    filename: RelativeName | None = Field(None, description="File name inside the output (default: "
                                         "<recipe name>-<TYPE>.gguf)")
    modelfile: bool = Field(True, description="Write an Ollama Modelfile next to the GGUF")
    num_ctx: int | None = Field(None, ge=128, le=1_048_576,
                                description="Context length in the Modelfile (default: min(model's, 8192))")
    verify: bool = Field(True, description="Load the file in llama.cpp, generate, and measure perplexity "
                                           "(when llama-cpp-python is installed)")
    keep_f16: bool = Field(False, description="Keep the intermediate F16 file of a llama.cpp-quantized type")

    @field_validator("type", mode="before")
    @classmethod
    def _lowercase(cls, value: Any) -> Any:
        """Accept llama-quantize's spelling (Q4_K_M) as well as ours (q4_k_m)."""
        return value.strip().lower().replace("-", "_") if isinstance(value, str) else value


class GGUFExporter(Exporter[GGUFParams]):
    name = "gguf"
    summary = "GGUF file for llama.cpp/Ollama/LM Studio (F16, Q8_0, K-quants via llama.cpp) + Modelfile"
    shorthand_field = "type"
    requires = Requirements(packages=("gguf",), extra="gguf")
    effects = Effects(notes=("K-quants need llama-cpp-python (tunekit[gguf]); widths not multiples of 256 "
                             "fall back per tensor to Q5_0/Q8_0/IQ4_NL as llama.cpp decides",))

    def needs(self) -> Requirements:
        """Types the ``gguf`` package cannot encode (K-quants, i-quants) go through llama-cpp-python."""
        from tunekit_gguf.types import gguf_type

        if gguf_type(self.params.type).direct:
            return self.requires
        return Requirements(packages=(*self.requires.packages, "llama_cpp"), extra=self.requires.extra)

    def export(self, model: Any, tokenizer: Any, out_dir: Path, ctx: StageContext) -> dict[str, Any]:
        from tunekit_gguf.export import export_gguf

        return export_gguf(self.params, model, tokenizer, Path(out_dir), ctx)  # type: ignore[arg-type]

