from __future__ import annotations

import subprocess
import sys


def test_help_does_not_import_torch() -> None:
    code = "import sys, tunekit.cli.main; sys.exit(any(m in sys.modules for m in ('torch','transformers','peft')))"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
