"""quadmix-spark: quality- and diversity-aware pretraining data selection on Spark and Delta."""

__version__ = "0.1.0"
