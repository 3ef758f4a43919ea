"""``python -m slmkit`` runs the command line."""

from slmkit.cli import main

raise SystemExit(main())
