"""`python -m devstack` (what `make local` runs): the whole pipeline on this machine."""

import sys

from devstack.local.stack import main

sys.exit(main())
