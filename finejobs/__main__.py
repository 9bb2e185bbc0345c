from finejobs.cli import main

raise SystemExit(main())
