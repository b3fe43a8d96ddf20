"""The lowest layer: constants, audio sources and writers, atomic files, test signals."""
