"""Review: look at generated labels before training on them (`distill gallery`).

The files read in the order the data flows: `read` (labels, ground truth, predictions
near the thresholds), `match` (precision and recall at IoU 0.5), `sample` (which images
the pages show), `draw` (thumbnails, in parallel), `plots` (matplotlib, optional),
`pages` (static HTML), `build` (the whole gallery) and `cli`.
"""
