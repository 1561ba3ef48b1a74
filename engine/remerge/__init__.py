"""Re-deciding a labeling run without the detector: `distill remerge`.

`distill label --keep-candidates` keeps every pass's pre-merge candidates beside each
shard; from them a run can be ensembled again with other merge settings or a subset of
its passes. The files read in the order the data flows: `candidates.py` is the file
format (written by the labeling pipeline, read here), `keypoint_reuse.py` decides which
person boxes changed and re-runs the top-down keypoint model on those only,
`remerge.py` rebuilds the run folder shard by shard, and `cli.py` is the command.
"""
