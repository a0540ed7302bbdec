"""Gradient Inversion Lab's engine: leak a federated update and invert it. Pure PyTorch.

The pieces, one module each: data (images and client splits), models (victims), leakage (what
the server sees), labels (labels from the gradient), objectives and regularisers (what an attack
minimises), attacks (DLG, iDLG, Inverting Gradients as generators of steps), metrics, config.
"""
