from mmtune.cli import main

raise SystemExit(main())
