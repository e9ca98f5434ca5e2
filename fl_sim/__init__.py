"""The federation: scenarios, data, models and the Flower apps with the honest-but-curious capture."""
