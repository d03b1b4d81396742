"""Running a Plan: Ray Tune stages, trial bodies wrapped as trainables, the run store."""
