"""``python -m mmdag ...`` (and ``torchrun -m mmdag test ...``): the mmdag command."""
import sys

from .cli import main

sys.exit(main())
