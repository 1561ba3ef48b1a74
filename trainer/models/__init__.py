"""Model definitions: ResNet backbone, FPN, the FCOS detector and the keypoint network."""
