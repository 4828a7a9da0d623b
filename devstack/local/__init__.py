"""The docker-free local stack (`python -m devstack`, `make local`): see `stack.py`."""
