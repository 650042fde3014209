import os
import sys

# `python -m smfd` puts the working folder first on the path: a user's own app.py or eval.py there
# would stand in for the project's app and eval packages (the `smfd` command does not do this).
if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from .cli import main  # noqa: E402

sys.exit(main())
