"""Examples of the plain-PyTorch API (``SparseEngine``) on Fashion-MNIST; run each as a script from the
repository root, e.g. ``python examples/mlp_fashion_mnist.py --method rigl``."""
