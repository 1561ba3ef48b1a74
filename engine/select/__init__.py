"""Selection: raw predictions (`distill label`'s shards) into hard labels, a COCO file."""
