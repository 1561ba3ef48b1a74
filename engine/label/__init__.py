"""The labeling pipeline: one module per stage, in the order an image travels."""
