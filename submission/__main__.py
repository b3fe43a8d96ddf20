"""``python -m submission VERSION [--cli] [--check]`` (what submit.sh runs)."""
import sys

from submission.cli import main

sys.exit(main())
