"""`python -m katib_metrics` is the console script."""

from katib_metrics.cli import main

raise SystemExit(main())
