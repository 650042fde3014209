import sys
from pathlib import Path

# `python -m smfd` puts the working folder first on the path: a user's own app.py or eval.py there
# would stand in for the project's app and eval packages (the `smfd` command does not do this).
# The project's own folder stays: a checkout run without installing finds its packages there.
if sys.path and Path(sys.path[0] or ".").resolve() != Path(__file__).resolve().parents[1]:
    del sys.path[0]

from .cli import main  # noqa: E402

sys.exit(main())
