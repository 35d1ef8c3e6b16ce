from saslauth.cli import main

raise SystemExit(main())
