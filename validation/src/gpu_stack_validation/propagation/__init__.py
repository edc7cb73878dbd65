"""gpu-propagation: the first article's numpy batch propagation, checked and timed."""
