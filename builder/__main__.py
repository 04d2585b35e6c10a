from builder.cli.client import main

raise SystemExit(main())
