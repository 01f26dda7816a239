"""The tiny kit: a tiny CLIP and miniature datasets in their real layouts (tests, demo, world)."""
