"""The supervisor and its components: temporal, stigmer-server, agent-runner."""
