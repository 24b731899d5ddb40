"""Jobs: the spec and status vocabulary, their persistence and their state machine."""
