"""COCO files and box geometry, one module for every package (torch-free).

The files read in the order the data flows: `schema` (the person-keypoint definitions),
`categories` (COCO's 80 detection categories and their ids), `read` (a COCO file read
strictly, every entry checked, or leniently), `geometry` (box IoU, xyxy <-> xywh) and
`evaluate` (pycocotools' COCOeval, quiet, with one key naming: `box_AP`, `box_AP50`, ...
and `keypoint_AP`, ...; the score of a person's keypoints).
"""
