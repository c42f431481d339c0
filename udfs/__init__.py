"""What runs on Spark's Python workers: the annotators, their one pass per Arrow batch, models."""
