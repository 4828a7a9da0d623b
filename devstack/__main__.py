"""`python -m devstack` (what `make local` runs): the whole pipeline on this machine."""

import sys

from devstack.stack import main

sys.exit(main())
