"""python -m kvcy: the same as the kvcy command."""
import sys

from kvcy.cli import main

sys.exit(main())
