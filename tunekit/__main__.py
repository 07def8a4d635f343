"""``python -m tunekit``: the CLI, so that launchers (``accelerate launch -m tunekit apply ...``,
``torchrun -m tunekit``) can run tunekit in each process without knowing where the script lives."""

from __future__ import annotations

from tunekit.cli.main import main

if __name__ == "__main__":
    main()
