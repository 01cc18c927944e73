"""The structured track: channels and their coupling, one run of channel pruning, removal and measurement."""
