"""Data: datasets (CIFAR-10, image folders, HDF5, synthetic), device splits, augmentation."""
