"""Rewrite the registry index (bench/catalog/registry_index.json) from what the package's own modules register.

Run it from the repository's root after adding a method, model or dataset to the package, or changing one's
registration or hyperparameters:

    python scripts/build_index.py

``bench list`` reads the index instead of importing the modules (and torch); tests/test_index.py fails while the
committed index is not what this writes.
"""

from prunebench.catalog.index_builder import write_index


def main() -> None:
    written = write_index()
    print(f"wrote {written.name}")


if __name__ == "__main__":
    main()
