"""`python -m services.sla`: the same as `tierline serve sla`."""
import sys

from services.cli import main

sys.exit(main(["serve", "sla", *sys.argv[1:]]))
