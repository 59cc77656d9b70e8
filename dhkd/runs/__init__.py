"""The runs layer: run folders (their layout), tracking, loading a run, reproduce and rescore."""
