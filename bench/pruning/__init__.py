"""Masks and what they are: the prunable set, the exact allocation layer (scopes), applying and saving masks, accounting."""
