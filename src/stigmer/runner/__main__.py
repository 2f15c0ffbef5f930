"""``python -m stigmer.runner``: run the agent-runner worker until SIGTERM."""

import sys

from stigmer.runner.worker import main

if __name__ == "__main__":
    sys.exit(main())
