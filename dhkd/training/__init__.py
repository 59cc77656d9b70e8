"""Training a method on (category, seed) units: what `dhkd train` and every study trial run.

- fit: `fit_units` (several units in lockstep, as a study trial trains them) and `fit` (one
  category, the entry point of `dhkd train`);
- data: a category's train, validation and test features under the selection protocol;
- loop: the stage loop, which drives the units through their method's stages, evaluates the
  last one on the validation images and reports each of its epochs;
- evaluate: metrics on an evaluated split, their means, the thresholds and their F1;
- result: the typed result of a run (FitResult) and its metrics.json record;
- outputs: writing the run folder (dhkd.runs.layout.RunFolder);
- runtime: seeding, the device and peak memory.
"""
