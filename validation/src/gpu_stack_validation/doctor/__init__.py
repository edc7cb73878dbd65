"""The GPU doctor: is this host a working TensorFlow GPU machine, and if not, what exactly to fix."""
