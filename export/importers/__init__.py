"""`distill import`: teachers from elsewhere, wrapped so that they meet the engine's
contracts (DESIGN.md, Detector graph and Keypoint graph) and carry a model card.

The network is never rewritten: ONNX's own tools (`onnx.compose`, `onnx.helper`) put a
small graph before it (uint8 NCHW RGB bytes -> whatever the network reads: layout,
channel order, dtype, scale, mean and std) and one after it (its outputs -> the
engine's: pre-NMS top-K `boxes` xyxy in input pixels, `scores`, `labels` as indices of
the card's categories, and for a one-stage pose model `keypoints`; or `heatmaps` for a
top-down keypoint model). Modules, in the order an import runs:

    formats      what a graph reads and writes, as typed descriptions (no onnx)
    ultralytics  an Ultralytics export's metadata -> those descriptions
    graph        the network read: its opset, its input, a run on a grey test image
    nodes        a small builder of ONNX nodes valid from opset 11 on
    decode       the graph after the network: its outputs -> the engine's, checked
    wrap         the graph before it, the three joined, the card, the final checks

Needs `onnx` (the `export` extra), imported inside the functions that use it; the
labeling box (engine/) never imports this package.
"""
