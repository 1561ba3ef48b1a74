"""Transforms chosen by measured value: `distill plan-transforms`.

Test-time augmentation multiplies the detector's compute by the number of passes, up to
18x; this measures which passes pay. The files read in the order the data flows:
`passes.py` runs the full plan once over a labeled validation set and keeps every pass's
candidates and its cost, `scoring.py` ensembles any subset of those cached passes (no
re-inference) and scores it against the labels, `search.py` grows subsets greedily and
finds the Pareto front and the plan within a budget, `report.py` prints and saves the
trade-off, and `cli.py` is the command.
"""
