"""``python -m imagegen`` is the same as the ``imagegen`` console script."""

from imagegen.cli import main

raise SystemExit(main())
