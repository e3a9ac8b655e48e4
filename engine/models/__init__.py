"""Models: the zoo (torchvision and CIFAR variants), freezing, heads, published weights."""
