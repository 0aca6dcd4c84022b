"""AU intensity (0-5) beside occurrence: metrics (:mod:`.metrics`), frame sampling and per-sequence median
normalisation (:mod:`.data`), linear regressors chosen on validation by ICC (:mod:`.linear`), the workflow's jobs
(:mod:`.jobs`) and its tables (:mod:`.tables`). See docs/intensity.md."""
