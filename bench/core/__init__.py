"""Foundations every layer uses: user errors, atomic files, stable hashes, the environment, references, process lifetime."""
