"""mnist-benchmark: the article's MNIST benchmark on CPU and GPU."""
