"""Runner image: engine endpoint, resolution (local, pull, tag), build, labels."""
