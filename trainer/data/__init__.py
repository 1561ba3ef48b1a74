"""COCO datasets (boxes, person keypoints), their augmentations and collate functions."""
