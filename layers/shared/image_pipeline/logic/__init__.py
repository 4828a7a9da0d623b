"""Domain logic: plain Python on models; adapters come in as arguments."""
