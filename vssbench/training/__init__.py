"""Training: the loop and its hooks, clip data, optimizer/schedule recipes, distributed setup."""
