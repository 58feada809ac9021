"""``python -m app COMMAND``: see ``python -m app --help``."""

import sys

if len(sys.argv) > 1 and sys.argv[1] in ("run", "bench-server"):
    # The server runs on gevent: patch the standard library before anything opens a socket.
    from gevent import monkey

    monkey.patch_all()

from app.cli import main

sys.exit(main())
