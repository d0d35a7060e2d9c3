from cnnplay.app.main import main

raise SystemExit(main())
