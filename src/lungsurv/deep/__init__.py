"""The paper's 3D SE-ResNet: the network, its inputs and augmentations, the training loop with a
Cox loss, and the 512-d deep features. Science: needs the ``dl`` extra (torch, MONAI, torchsurv)."""
