"""Exit 0 when something accepts TCP connections on HOST PORT, else 1 (used by the Makefile)."""

import socket
import sys

try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    sys.exit(1)
