"""The upstream emulator and the docker-free local stack."""
