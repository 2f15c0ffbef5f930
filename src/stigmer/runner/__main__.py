"""``python -m stigmer.runner``: run the agent-runner worker until SIGTERM."""

from stigmer.hardening import exit_now
from stigmer.runner.worker import main

if __name__ == "__main__":
    exit_now(main())
